// `nbrl tokenize`, run as the real binary against a tokenizer our trainer wrote.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/bpe_trainer.h"
#include "model/tokenizer.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::cli {
namespace {

using ::testing::HasSubstr;

class TokenizeCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new testutil::TempDir("tokenize_command_");
    dir_ = new std::string(tmp_->path());
    model::BpeTrainerOptions options;
    options.vocab_size = 300;
    std::string corpus;
    for (int i = 0; i < 100; ++i) corpus += "print(hello world)\nthe agent\n";
    auto files = model::TrainBpeTokenizer(corpus, options);
    ASSERT_TRUE(files.ok()) << files.status();
    ASSERT_TRUE(model::WriteTokenizerFiles(*files, *dir_ + "/tok").ok());
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  static std::string Json(const std::vector<int32_t>& ids) {
    return absl::StrCat("[", absl::StrJoin(ids, ","), "]\n");
  }
  static std::unique_ptr<model::Tokenizer> Load() {
    auto t = model::Tokenizer::Load(*dir_ + "/tok");
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }
  static testutil::TempDir* tmp_;
  static std::string* dir_;
};
testutil::TempDir* TokenizeCommandTest::tmp_ = nullptr;
std::string* TokenizeCommandTest::dir_ = nullptr;

TEST_F(TokenizeCommandTest, PrintsIdsOfTextAsJson) {
  auto t = Load();
  ASSERT_NE(t, nullptr);
  const std::string text = "print(hello world) <|im_end|>";
  auto run = testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "tokenize",
                                   "--tokenizer", *dir_ + "/tok", "--text", text});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_EQ(run->out, Json(t->Encode(text)));
}

TEST_F(TokenizeCommandTest, SpecialFlagMatchesSpecialTokens) {
  auto t = Load();
  ASSERT_NE(t, nullptr);
  const std::string text = "the agent<|im_end|>";
  auto run = testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "tokenize",
                                   "--tokenizer=" + *dir_ + "/tok", "--special",
                                   "--text=" + text});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_EQ(run->out, Json(t->EncodeWithSpecialTokens(text)));
  EXPECT_NE(t->EncodeWithSpecialTokens(text), t->Encode(text));
}

TEST_F(TokenizeCommandTest, ReadsStandardInputWithoutText) {
  auto t = Load();
  ASSERT_NE(t, nullptr);
  const std::string text = "line one\n\tline two=2\n";
  ASSERT_TRUE(common::WriteFileAtomically(*dir_ + "/input.txt", text).ok());
  auto run =
      testutil::RunCommand({"/bin/sh", "-c",
                            absl::StrCat("exec '", testutil::BinaryPath("cli/nbrl"),
                                         "' tokenize --tokenizer '", *dir_, "/tok' < '",
                                         *dir_, "/input.txt'")});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_EQ(run->out, Json(t->Encode(text)));
}

TEST_F(TokenizeCommandTest, MissingTokenizerFlagIsAUsageError) {
  auto run = testutil::RunCommand(
      {testutil::BinaryPath("cli/nbrl"), "tokenize", "--text", "hi"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 2);
  EXPECT_THAT(run->err, HasSubstr("needs --tokenizer DIR"));
}

TEST_F(TokenizeCommandTest, BrokenTokenizerFileIsReportedWithItsPath) {
  const std::string broken = *dir_ + "/broken";
  ASSERT_TRUE(common::WriteFileAtomically(broken + "/tokenizer.json",
                                          "{\"model\": {\"vocab\": {")
                  .ok());
  auto run = testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "tokenize",
                                   "--tokenizer", broken, "--text", "hi"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 1);
  EXPECT_THAT(run->err, HasSubstr(broken + "/tokenizer.json"));
  EXPECT_THAT(run->err, HasSubstr("not valid JSON"));
}

TEST_F(TokenizeCommandTest, HelpDescribesTheFlags) {
  auto run =
      testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "tokenize", "--help"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0);
  EXPECT_THAT(run->out, HasSubstr("--tokenizer DIR"));
  EXPECT_THAT(run->out, HasSubstr("--special"));
}

}  // namespace
}  // namespace nbrl::cli
