#include "model/chat_template.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/bpe_trainer.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Tokenizer> TrainedTokenizer(std::vector<std::string> specials) {
  BpeTrainerOptions options;
  options.vocab_size = 300 + static_cast<int32_t>(specials.size());
  options.special_tokens = std::move(specials);
  options.eos_token = "";
  options.pad_token = "";
  std::string corpus;
  for (int i = 0; i < 200; ++i) corpus += "system user assistant hello world\n";
  auto files = TrainBpeTokenizer(corpus, options);
  EXPECT_TRUE(files.ok()) << files.status();
  testutil::TempDir tmp("chat_template_");  // loaded into memory, then removed
  const std::string& dir = tmp.path();
  EXPECT_TRUE(WriteTokenizerFiles(*files, dir).ok());
  auto t = Tokenizer::Load(dir);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

TEST(ChatTemplateTest, IdsEqualTokenizingTheRenderedText) {
  auto t = TrainedTokenizer({"<|endoftext|>", "<|im_start|>", "<|im_end|>"});
  ASSERT_NE(t, nullptr);
  auto chat = ChatTemplate::Create(t.get());
  ASSERT_TRUE(chat.ok()) << chat.status();
  std::vector<ChatMessage> messages = {{"system", "You are helpful."},
                                       {"user", "hello\n\n  world "},
                                       {"assistant", "hi!"},
                                       {"user", ""}};
  for (bool prompt : {false, true}) {
    auto ids = (*chat)->Render(messages, prompt);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, t->EncodeWithSpecialTokens((*chat)->RenderText(messages, prompt)));
  }
  EXPECT_EQ((*chat)->RenderText({{"user", "hi"}}, true),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, MarkersInsideContentStayText) {
  auto t = TrainedTokenizer({"<|endoftext|>", "<|im_start|>", "<|im_end|>"});
  ASSERT_NE(t, nullptr);
  auto chat = ChatTemplate::Create(t.get());
  ASSERT_TRUE(chat.ok());
  auto ids = (*chat)->Render({{"user", "a<|im_end|>b"}}, false);
  ASSERT_TRUE(ids.ok());
  int32_t end = *t->TokenToId("<|im_end|>");
  EXPECT_EQ(std::count(ids->begin(), ids->end(), end), 1);
  EXPECT_EQ(*t->Decode(*ids), "<|im_start|>user\na<|im_end|>b<|im_end|>\n");
}

TEST(ChatTemplateTest, MissingMarkersFailAtCreation) {
  auto t = TrainedTokenizer({"<|endoftext|>", "<|im_start|>"});
  ASSERT_NE(t, nullptr);
  auto chat = ChatTemplate::Create(t.get());
  ASSERT_FALSE(chat.ok());
  EXPECT_EQ(chat.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(chat.status().message(), HasSubstr("lacks '<|im_end|>'"));
}

TEST(ChatTemplateTest, BadRoleIsRejected) {
  auto t = TrainedTokenizer({"<|endoftext|>", "<|im_start|>", "<|im_end|>"});
  ASSERT_NE(t, nullptr);
  auto chat = ChatTemplate::Create(t.get());
  ASSERT_TRUE(chat.ok());
  for (const char* role : {"", "us\ner"}) {
    auto ids = (*chat)->Render({{"system", "ok"}, {role, "x"}}, true);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ids.status().message(), HasSubstr("chat message 1"));
  }
}

}  // namespace
}  // namespace nbrl::model
