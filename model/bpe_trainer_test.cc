#include "model/bpe_trainer.h"

#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;

// A corpus with a Zipf-like mix of words, code and some non-ASCII text.
std::string Corpus() {
  const std::vector<std::string> words = {
      "the",   "agent",  "notebook", "print",  "return", "def",  "import",
      "numpy", "answer", "reward",   "policy", "token",  "  ",   "\n",
      "x = 1", "(",      ")",        ":",      "привет", "世界", "café"};
  std::mt19937 rng(7);
  std::string corpus;
  for (int i = 0; i < 20000; ++i) {
    size_t k =
        std::min<size_t>(words.size() - 1, rng() % words.size() * (rng() % 3) / 2);
    absl::StrAppend(&corpus, words[k], rng() % 4 == 0 ? "\n" : " ");
  }
  return corpus;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> TrainAndLoad(
    const BpeTrainerOptions& options, const std::string& name) {
  absl::StatusOr<TokenizerFiles> files = TrainBpeTokenizer(Corpus(), options);
  if (!files.ok()) return files.status();
  testutil::TempDir tmp("bpe_trainer_" + name);  // loaded into memory, then removed
  const std::string& dir = tmp.path();
  if (absl::Status st = WriteTokenizerFiles(*files, dir); !st.ok()) return st;
  return Tokenizer::Load(dir);
}

TEST(BpeTrainerTest, TrainedTokenizerLoadsWithTheRequestedSize) {
  BpeTrainerOptions options;
  options.vocab_size = 300;
  auto t = TrainAndLoad(options, "size");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 300);
  EXPECT_EQ((*t)->eos_id(), 299);  // <|im_end|>, the last special token
  EXPECT_EQ((*t)->pad_id(), 297);  // <|endoftext|>
  EXPECT_TRUE((*t)->IsSpecial(298));
  EXPECT_EQ(*(*t)->IdToToken(298), "<|im_start|>");
}

TEST(BpeTrainerTest, FrequentWordsBecomeSingleTokens) {
  BpeTrainerOptions options;
  options.vocab_size = 400;
  auto t = TrainAndLoad(options, "words");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Encode(" the").size(), 1u);
  EXPECT_EQ((*t)->Encode(" agent").size(), 1u);
  EXPECT_LT((*t)->Encode("the agent notebook").size(), 18u / 3);
}

TEST(BpeTrainerTest, AnyTextRoundTrips) {
  BpeTrainerOptions options;
  options.vocab_size = 350;
  auto t = TrainAndLoad(options, "roundtrip");
  ASSERT_TRUE(t.ok()) << t.status();
  for (const std::string& text :
       {std::string("unseen words, 12345 and \t\ttabs\n"),
        std::string("日本語 🙂 ok"), std::string("bad \xff\xfe bytes \xc3"),
        std::string("<|im_end|> as text")}) {
    EXPECT_EQ(*(*t)->Decode((*t)->Encode(text)), text);
  }
}

TEST(BpeTrainerTest, TrainingIsDeterministic) {
  BpeTrainerOptions options;
  options.vocab_size = 320;
  auto a = TrainBpeTokenizer(Corpus(), options);
  auto b = TrainBpeTokenizer(Corpus(), options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokenizer_json, b->tokenizer_json);
  EXPECT_EQ(a->tokenizer_config_json, b->tokenizer_config_json);
}

TEST(BpeTrainerTest, StopsWhenNoPairIsFrequentEnough) {
  BpeTrainerOptions options;
  options.vocab_size = 100000;
  options.min_frequency = 1000000;
  auto files = TrainBpeTokenizer("tiny corpus", options);
  ASSERT_TRUE(files.ok());
  auto json = nlohmann::json::parse(files->tokenizer_json);
  EXPECT_EQ(json["model"]["vocab"].size(), 256u);
  EXPECT_TRUE(json["model"]["merges"].empty());
}

TEST(BpeTrainerTest, TooSmallVocabularyIsRejected) {
  BpeTrainerOptions options;
  options.vocab_size = 258;
  auto files = TrainBpeTokenizer("abc", options);
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(files.status().message(), HasSubstr("vocab_size 258"));
}

TEST(BpeTrainerTest, EosMustBeASpecialToken) {
  BpeTrainerOptions options;
  options.eos_token = "</s>";
  auto files = TrainBpeTokenizer("abc", options);
  ASSERT_FALSE(files.ok());
  EXPECT_THAT(files.status().message(),
              HasSubstr("'</s>' is not one of special_tokens"));
}

TEST(BpeTrainerTest, DuplicateSpecialTokenIsRejected) {
  BpeTrainerOptions options;
  options.special_tokens = {"<a>", "<a>"};
  options.eos_token = "<a>";
  options.pad_token = "";
  auto files = TrainBpeTokenizer("abc", options);
  ASSERT_FALSE(files.ok());
  EXPECT_THAT(files.status().message(), HasSubstr("listed twice"));
}

}  // namespace
}  // namespace nbrl::model
