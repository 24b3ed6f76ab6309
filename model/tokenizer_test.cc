#include "model/tokenizer.h"

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/byte_level.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A tiny byte-level tokenizer: ids 0..255 are the bytes, then merges
// l+l, h+e, he+ll, hell+o, a+a, Ġ+w (ids 256..261), then three added tokens.
Json TinyTokenizerJson(bool pair_merges = false) {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToUnicode(static_cast<uint8_t>(b))] = b;
  std::vector<std::pair<std::string, std::string>> merges = {
      {"l", "l"}, {"h", "e"}, {"he", "ll"}, {"hell", "o"}, {"a", "a"}, {"Ġ", "w"}};
  Json merge_list = Json::array();
  int id = 256;
  for (const auto& [l, r] : merges) {
    vocab[l + r] = id++;
    if (pair_merges) {
      merge_list.push_back({l, r});
    } else {
      merge_list.push_back(l + " " + r);
    }
  }
  Json added = Json::array();
  for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    added.push_back({{"id", id++}, {"content", s}, {"special", true}});
  }
  added.push_back({{"id", id++}, {"content", "<think>"}, {"special", false}});
  Json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"},
               {"pattern",
                {{"Regex",
                  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              byte_level}}}},
          {"post_processor", byte_level},
          {"decoder", byte_level},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

Json TinyConfig() {
  return {{"eos_token", "<|im_end|>"},
          {"pad_token", {{"content", "<|endoftext|>"}}},
          {"bos_token", nullptr}};
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = tmp_.path(); }
  absl::StatusOr<std::unique_ptr<Tokenizer>> LoadWith(const std::string& json,
                                                      const std::string& config) {
    EXPECT_TRUE(common::WriteFileAtomically(dir_ + "/tokenizer.json", json).ok());
    EXPECT_TRUE(
        common::WriteFileAtomically(dir_ + "/tokenizer_config.json", config).ok());
    return Tokenizer::Load(dir_);
  }
  std::unique_ptr<Tokenizer> LoadTiny(bool pair_merges = false) {
    auto t = LoadWith(TinyTokenizerJson(pair_merges).dump(), TinyConfig().dump());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }
  // Loading `json` must fail with `code`, naming the file and `field`.
  void ExpectLoadError(const Json& json, absl::StatusCode code,
                       const std::string& field) {
    auto t = LoadWith(json.dump(), TinyConfig().dump());
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), code) << t.status();
    EXPECT_THAT(t.status().message(), HasSubstr(dir_ + "/tokenizer.json"));
    EXPECT_THAT(t.status().message(), HasSubstr(field));
  }
  testutil::TempDir tmp_{"tokenizer_test_"};
  std::string dir_;
};

TEST_F(TokenizerTest, MergesApplyInRankOrder) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("hello"), ElementsAre(259));
  // Only h+e applies to "hel".
  EXPECT_THAT(t->Encode("hel"), ElementsAre(257, 'l'));
  // Among equal pairs, the leftmost merges first.
  EXPECT_THAT(t->Encode("aaa"), ElementsAre(260, 'a'));
  EXPECT_THAT(t->Encode("hello world"), ElementsAre(259, 261, 'o', 'r', 'l', 'd'));
}

TEST_F(TokenizerTest, StringAndPairMergeFormsAgree) {
  auto strings = LoadTiny(/*pair_merges=*/false);
  auto pairs = LoadTiny(/*pair_merges=*/true);
  ASSERT_NE(strings, nullptr);
  ASSERT_NE(pairs, nullptr);
  for (const char* text : {"hello world", "aaaa hell", "llama"}) {
    EXPECT_EQ(strings->Encode(text), pairs->Encode(text)) << text;
  }
}

TEST_F(TokenizerTest, EncodeDoesNotMatchSpecialTokens) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> ids = t->Encode("<|im_end|>");
  EXPECT_GT(ids.size(), 1u);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *t->TokenToId("<|im_end|>")), 0);
  EXPECT_EQ(*t->Decode(ids), "<|im_end|>");
}

TEST_F(TokenizerTest, EncodeWithSpecialTokensMatchesAddedTokens) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  const int32_t start = *t->TokenToId("<|im_start|>");
  const int32_t end = *t->TokenToId("<|im_end|>");
  const int32_t think = *t->TokenToId("<think>");
  EXPECT_THAT(t->EncodeWithSpecialTokens("<|im_start|>hello<|im_end|><think>"),
              ElementsAre(start, 259, end, think));
  EXPECT_THAT(t->EncodeWithSpecialTokens("aa<|im_end"),
              ::testing::Not(::testing::Contains(end)));
  std::string text = "x<|im_start|><|im_start|> hello\n<|im_end|>";
  EXPECT_EQ(*t->Decode(t->EncodeWithSpecialTokens(text)), text);
}

TEST_F(TokenizerTest, DecodeSkipsOnlySpecialTokensWhenAsked) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> ids = t->EncodeWithSpecialTokens("<|im_start|>hello<think>");
  EXPECT_EQ(*t->Decode(ids, /*skip_special_tokens=*/true), "hello<think>");
  EXPECT_EQ(*t->Decode(ids), "<|im_start|>hello<think>");
}

TEST_F(TokenizerTest, InvalidUtf8RoundTripsByteForByte) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  const std::string text = std::string("ab\xff\xfe hello \xc3", 12) + "\xed\xa0\x80z";
  std::vector<int32_t> ids = t->Encode(text);
  EXPECT_EQ(*t->Decode(ids), text);
  // The stray bytes 0xFF 0xFE are one pre-token; "ab" before them is unaffected.
  EXPECT_EQ(ids[0], 'a');
  EXPECT_EQ(ids[1], 'b');
  EXPECT_EQ(ids[2], 0xFF);
}

TEST_F(TokenizerTest, NfcNormalizerComposesBeforeEncoding) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Encode("e\xcc\x81"), t->Encode("\xc3\xa9"));
  EXPECT_EQ(*t->Decode(t->Encode("e\xcc\x81")), "\xc3\xa9");
}

TEST_F(TokenizerTest, TokenLookupsAndSpecialIds) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 266);
  EXPECT_EQ(*t->TokenToId("Ġw"), 261);
  EXPECT_EQ(*t->IdToToken(261), "Ġw");
  EXPECT_FALSE(t->TokenToId("nope").has_value());
  EXPECT_EQ(t->eos_id(), *t->TokenToId("<|im_end|>"));
  EXPECT_EQ(t->pad_id(), *t->TokenToId("<|endoftext|>"));
  EXPECT_EQ(t->bos_id(), -1);
  EXPECT_TRUE(t->IsSpecial(t->eos_id()));
  EXPECT_FALSE(t->IsSpecial(*t->TokenToId("<think>")));
}

TEST_F(TokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  for (int32_t id : {-1, 266, 1 << 20}) {
    absl::StatusOr<std::string> text = t->Decode({104, id});
    ASSERT_FALSE(text.ok());
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(text.status().message(), HasSubstr("outside the vocabulary"));
  }
  EXPECT_FALSE(t->IdToToken(266).ok());
}

TEST_F(TokenizerTest, ConfigIsOptional) {
  ASSERT_TRUE(
      common::WriteFileAtomically(dir_ + "/tokenizer.json", TinyTokenizerJson().dump())
          .ok());
  auto t = Tokenizer::Load(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->eos_id(), -1);
}

TEST_F(TokenizerTest, MissingTokenizerJsonIsNotFound) {
  auto t = Tokenizer::Load(dir_ + "/absent");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.json"));
}

TEST_F(TokenizerTest, TruncatedTokenizerJsonIsDataLoss) {
  std::string json = TinyTokenizerJson().dump();
  auto t = LoadWith(json.substr(0, json.size() / 2), TinyConfig().dump());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(t.status().message(), HasSubstr(dir_ + "/tokenizer.json"));
  EXPECT_THAT(t.status().message(), HasSubstr("not valid JSON"));
}

TEST_F(TokenizerTest, MissingVocabNamesTheField) {
  Json json = TinyTokenizerJson();
  json["model"].erase("vocab");
  ExpectLoadError(json, absl::StatusCode::kDataLoss, "'model.vocab'");
}

TEST_F(TokenizerTest, NonIntegerVocabIdNamesTheToken) {
  Json json = TinyTokenizerJson();
  json["model"]["vocab"]["he"] = "257";
  ExpectLoadError(json, absl::StatusCode::kDataLoss, "'model.vocab[\"he\"]'");
}

TEST_F(TokenizerTest, MergeOfUnknownTokenNamesTheMerge) {
  Json json = TinyTokenizerJson();
  json["model"]["merges"][2] = "he zz";
  ExpectLoadError(json, absl::StatusCode::kDataLoss, "'model.merges[2]'");
}

TEST_F(TokenizerTest, MalformedMergeStringNamesTheMerge) {
  Json json = TinyTokenizerJson();
  json["model"]["merges"][0] = "ll";
  ExpectLoadError(json, absl::StatusCode::kDataLoss, "'model.merges[0]'");
  json["model"]["merges"][0] = Json::array({"l"});
  ExpectLoadError(json, absl::StatusCode::kDataLoss, "'model.merges[0]'");
}

TEST_F(TokenizerTest, MissingByteTokenIsRejected) {
  Json json = TinyTokenizerJson();
  json["model"]["vocab"].erase("Ġ");
  json["model"]["merges"].erase(5);
  ExpectLoadError(json, absl::StatusCode::kDataLoss, "no token for byte 0x20");
}

TEST_F(TokenizerTest, AddedTokenWithoutContentNamesTheEntry) {
  Json json = TinyTokenizerJson();
  json["added_tokens"][1].erase("content");
  ExpectLoadError(json, absl::StatusCode::kDataLoss, "'added_tokens[1].content'");
}

TEST_F(TokenizerTest, UnsupportedModelTypeIsInvalidArgument) {
  Json json = TinyTokenizerJson();
  json["model"]["type"] = "WordPiece";
  ExpectLoadError(json, absl::StatusCode::kInvalidArgument, "'model.type'");
}

TEST_F(TokenizerTest, UnsupportedNormalizerIsInvalidArgument) {
  Json json = TinyTokenizerJson();
  json["normalizer"] = {{"type", "Lowercase"}};
  ExpectLoadError(json, absl::StatusCode::kInvalidArgument, "'normalizer.type'");
}

TEST_F(TokenizerTest, UnsupportedLookaroundInSplitPatternIsInvalidArgument) {
  Json json = TinyTokenizerJson();
  json["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\p{L}+(?=\\d)";
  ExpectLoadError(json, absl::StatusCode::kInvalidArgument, "'pre_tokenizer'");
}

TEST_F(TokenizerTest, TemplatePostProcessorIsInvalidArgument) {
  Json json = TinyTokenizerJson();
  json["post_processor"] = {{"type", "TemplateProcessing"}};
  ExpectLoadError(json, absl::StatusCode::kInvalidArgument, "'post_processor.type'");
}

TEST_F(TokenizerTest, ByteFallbackIsInvalidArgument) {
  Json json = TinyTokenizerJson();
  json["model"]["byte_fallback"] = true;
  ExpectLoadError(json, absl::StatusCode::kInvalidArgument, "'model.byte_fallback'");
}

TEST_F(TokenizerTest, UnknownEosTokenNamesTheConfigField) {
  Json config = TinyConfig();
  config["eos_token"] = "</s>";
  auto t = LoadWith(TinyTokenizerJson().dump(), config.dump());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(t.status().message(), HasSubstr(dir_ + "/tokenizer_config.json"));
  EXPECT_THAT(t.status().message(), HasSubstr("'eos_token'"));
}

TEST_F(TokenizerTest, TruncatedConfigNamesTheConfigFile) {
  std::string config = TinyConfig().dump();
  auto t = LoadWith(TinyTokenizerJson().dump(), config.substr(0, config.size() - 3));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(t.status().message(), HasSubstr(dir_ + "/tokenizer_config.json"));
}

TEST_F(TokenizerTest, WrongTypeOfEosTokenNamesTheField) {
  Json config = TinyConfig();
  config["eos_token"] = 7;
  auto t = LoadWith(TinyTokenizerJson().dump(), config.dump());
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("field 'eos_token'"));
}

TEST_F(TokenizerTest, ConcurrentEncodesAgree) {
  auto t = LoadTiny();
  ASSERT_NE(t, nullptr);
  const std::string text = "hello world aaa llama hello\n\n  hell o";
  const std::vector<int32_t> expected = t->Encode(text);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 200; ++k) {
        if (t->Encode(text) != expected) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace nbrl::model
