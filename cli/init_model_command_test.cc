// `nbrl init-model`, run as the real binary: the folder it writes loads as a model
// and a tokenizer, and bad input is a clear error.
#include <string>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::cli {
namespace {

using ::testing::HasSubstr;

TEST(InitModelCommandTest, WritesALoadableCheckpointAndTokenizer) {
  testutil::TempDir tmp("init_model_");
  const std::string& dir = tmp.path();
  std::string text;
  for (int i = 0; i < 50; ++i) {
    text += "hits = web_search('Ardan Company')\nprint(read_page(hits[0]['id']))\n";
  }
  ASSERT_TRUE(common::WriteFileAtomically(dir + "/a.txt", text).ok());
  ASSERT_TRUE(
      common::WriteFileAtomically(dir + "/b.jsonl",
                                  "{\"question\": \"Who founded Ardan?\", \"n\": 3}\n")
          .ok());
  auto r = testutil::RunCommand(
      {testutil::BinaryPath("cli/nbrl"), "init-model", "--out", dir + "/m", "--text",
       dir + "/a.txt," + dir + "/b.jsonl", "--vocab", "400", "--hidden", "32",
       "--layers", "1", "--heads", "4", "--kv-heads", "2"});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->err;
  EXPECT_THAT(r->out, HasSubstr("1 layers, hidden 32"));

  auto m = model::LoadTransformer(dir + "/m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->config().hidden_size, 32);
  EXPECT_EQ((*m)->config().num_key_value_heads, 2);
  auto tok = model::Tokenizer::Load(dir + "/m");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*m)->config().vocab_size, (*tok)->vocab_size());
  const std::string code = "hits = web_search('Ardan Company')";
  auto ids = (*tok)->Encode(code);
  EXPECT_LT(ids.size(), code.size() / 2);  // the action vocabulary was learned
  auto decoded = (*tok)->Decode(ids);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, code);
}

TEST(InitModelCommandTest, BadInputIsAClearError) {
  testutil::TempDir tmp("init_model_bad_");
  const std::string& dir = tmp.path();
  auto missing =
      testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "init-model", "--out",
                            dir + "/m", "--text", dir + "/nope.txt"});
  ASSERT_TRUE(missing.ok());
  EXPECT_NE(missing->exit_code, 0);
  EXPECT_THAT(missing->err, HasSubstr("nope.txt"));

  ASSERT_TRUE(
      common::WriteFileAtomically(dir + "/bad.jsonl", "{\"a\": 1}\n{oops\n").ok());
  auto bad_json =
      testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "init-model", "--out",
                            dir + "/m", "--text", dir + "/bad.jsonl"});
  ASSERT_TRUE(bad_json.ok());
  EXPECT_NE(bad_json->exit_code, 0);
  EXPECT_THAT(bad_json->err, HasSubstr("bad.jsonl:2: not valid JSON"));

  auto heads = testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "init-model",
                                     "--out", dir + "/m", "--text", dir + "/bad.jsonl",
                                     "--hidden", "30", "--heads", "4"});
  ASSERT_TRUE(heads.ok());
  EXPECT_EQ(heads->exit_code, 2);
  EXPECT_THAT(heads->err, HasSubstr("must be a multiple of --heads"));
}

}  // namespace
}  // namespace nbrl::cli
