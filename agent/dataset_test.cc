#include "agent/dataset.h"

#include <fstream>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// This test process's files, removed when it exits.
const std::string& ScratchDir() {
  static const testutil::TempDir dir("dataset-");
  return dir.path();
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ScratchDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(DatasetTest, LoadsNbrlJsonl) {
  std::string path = WriteTemp(
      "a.jsonl",
      "{\"id\": \"q1\", \"question\": \"Who?\", \"answers\": [\"Ana\", \"Ana B\"], "
      "\"metadata\": {\"kind\": \"bridge\"}}\n\n"
      "{\"id\": 2, \"question\": \"How many?\", \"answers\": [\"3\"]}\n");
  LoadReport report;
  auto ex = LoadJsonl(path, {}, &report);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_EQ((*ex)[0].id, "q1");
  EXPECT_THAT((*ex)[0].answers, ElementsAre("Ana", "Ana B"));
  EXPECT_EQ((*ex)[0].metadata_json, "{\"kind\":\"bridge\"}");
  EXPECT_EQ((*ex)[1].id, "2");
  EXPECT_EQ(report.lines, 2);
  EXPECT_EQ(report.loaded, 2);
}

TEST(DatasetTest, BadLineIsFatalWithItsLineNumber) {
  std::string path =
      WriteTemp("bad.jsonl",
                "{\"id\": \"q1\", \"question\": \"Who?\", \"answers\": [\"Ana\"]}\n"
                "{\"id\": \"q2\", \"question\": \"Who?\"}\n");
  auto ex = LoadJsonl(path);
  ASSERT_FALSE(ex.ok());
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ex.status().message()),
              HasSubstr(path + ":2: missing 'answers'"));
}

TEST(DatasetTest, BadLinesCanBeSkippedAndAreCounted) {
  std::string path =
      WriteTemp("skip.jsonl",
                "not json\n"
                "{\"id\": \"q1\", \"question\": \"Who?\", \"answers\": [\"Ana\"]}\n"
                "[1, 2]\n"
                "{\"id\": \"q1\", \"question\": \"Again?\", \"answers\": [\"x\"]}\n"
                "{\"id\": \"q3\", \"question\": \"Who?\", \"answers\": []}\n");
  LoadOptions options;
  options.on_bad_line = BadLinePolicy::kSkip;
  LoadReport report;
  auto ex = LoadJsonl(path, options, &report);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->size(), 1u);
  ASSERT_EQ(report.skipped.size(), 4u);
  EXPECT_THAT(report.skipped[0], HasSubstr(":1: not valid JSON"));
  EXPECT_THAT(report.skipped[1], HasSubstr(":3: expected a JSON object"));
  EXPECT_THAT(report.skipped[2], HasSubstr(":4: duplicate id 'q1'"));
  EXPECT_THAT(report.skipped[3], HasSubstr(":5: 'answers' is empty"));
}

TEST(DatasetTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadJsonl("/nonexistent/x.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(DatasetTest, ConvertsHotpotQa) {
  std::string path = WriteTemp(
      "hotpot.json",
      "[{\"_id\": \"5a8b\", \"question\": \"Which band?\", \"answer\": \"Blur\", "
      "\"type\": \"bridge\", \"level\": \"hard\", \"supporting_facts\": [], "
      "\"context\": [[\"Blur\", [\"Blur is a band.\"]]]}]");
  auto ex = ConvertDataset("hotpotqa", path);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 1u);
  EXPECT_EQ((*ex)[0].id, "5a8b");
  EXPECT_THAT((*ex)[0].answers, ElementsAre("Blur"));
  EXPECT_EQ((*ex)[0].metadata_json, "{\"level\":\"hard\",\"type\":\"bridge\"}");
  auto bad = ConvertDataset("hotpotqa", WriteTemp("hotpot-bad.json", "{\"x\": 1}"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("expected a JSON array"));
}

// Deeply nested values (which dump() and copies would recurse into, once per
// level) and structured ids are refused naming the line, never a crash.
TEST(DatasetTest, DeeplyNestedOrStructuredFieldsAreRefused) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string nested_meta =
      "{\"id\": \"q1\", \"question\": \"Who?\", "
      "\"answers\": [\"Ana\"], \"metadata\": {\"x\": " +
      deep + "}}\n";
  auto meta = LoadJsonl(WriteTemp("deep.jsonl", nested_meta));
  ASSERT_FALSE(meta.ok());
  EXPECT_THAT(std::string(meta.status().message()),
              HasSubstr(":1: 'metadata' nests deeper than 63 levels"));
  auto id = LoadJsonl(WriteTemp(
      "objid.jsonl", "{\"id\": {\"a\": " + deep +
                         "}, \"question\": \"Who?\", \"answers\": [\"Ana\"]}\n"));
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr(":1: 'id' must be a string or a number, got an object of 1"));
  auto hotpot = ConvertDataset(
      "hotpotqa",
      WriteTemp("hotpot-deep.json",
                "[{\"_id\": \"5a8b\", \"question\": \"Which band?\", \"answer\": "
                "\"Blur\", \"type\": " +
                    deep + "}]"));
  ASSERT_FALSE(hotpot.ok());
  EXPECT_THAT(std::string(hotpot.status().message()),
              HasSubstr("example 0: 'type' nests deeper than 63 levels"));
  auto flashrag = ConvertDataset(
      "flashrag", WriteTemp("flashrag-deep.jsonl",
                            "{\"question\": \"Q?\", \"golden_answers\": [\"A\"], "
                            "\"data_source\": " +
                                deep + "}\n"));
  ASSERT_FALSE(flashrag.ok());
  EXPECT_THAT(std::string(flashrag.status().message()),
              HasSubstr("'data_source' nests deeper than 63 levels"));
}

TEST(DatasetTest, ConvertsSimpleQaCsvWithQuotedFields) {
  std::string path = WriteTemp("simpleqa.csv",
                               "metadata,problem,answer\r\n"
                               "\"{'topic': 'Art', 'urls': ['a', 'b']}\",\"Who painted "
                               "\"\"X\"\",\nin 1900?\",Ana\r\n"
                               "{},What year?,1999\n");
  auto ex = ConvertDataset("simpleqa", path);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_EQ((*ex)[0].question, "Who painted \"X\",\nin 1900?");
  EXPECT_THAT((*ex)[0].answers, ElementsAre("Ana"));
  EXPECT_EQ((*ex)[1].id, "simpleqa-2");
  auto bad = ConvertDataset("simpleqa", WriteTemp("sq-bad.csv", "q,a\nx,y\n"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'problem' and 'answer'"));
  auto ragged =
      ConvertDataset("simpleqa", WriteTemp("sq-rag.csv", "problem,answer\nx\n"));
  EXPECT_THAT(std::string(ragged.status().message()), HasSubstr("row 1: has 1 fields"));
}

TEST(DatasetTest, ConvertsFlashRagAndSearchR1) {
  std::string path = WriteTemp("flashrag.jsonl",
                               "{\"id\": \"test_0\", \"question\": \"who wrote x\", "
                               "\"golden_answers\": [\"Ana\", "
                               "\"A. B.\"], \"metadata\": {\"split\": \"test\"}}\n"
                               "{\"question\": \"when\", \"golden_answers\": [1999], "
                               "\"data_source\": \"nq\"}\n");
  auto ex = ConvertDataset("flashrag", path);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_THAT((*ex)[0].answers, ElementsAre("Ana", "A. B."));
  EXPECT_EQ((*ex)[1].id, "2");
  EXPECT_THAT((*ex)[1].answers, ElementsAre("1999"));
  EXPECT_EQ((*ex)[1].metadata_json, "{\"data_source\":\"nq\"}");
  EXPECT_THAT(std::string(ConvertDataset("parquet", path).status().message()),
              HasSubstr("unknown dataset format 'parquet'"));
}

TEST(DatasetTest, WriteThenLoadRoundTrips) {
  std::vector<Example> in = {{"a", "Q1 \"quoted\" ü", {"x", "y"}, "{\"k\":1}"},
                             {"b", "Q2", {"z"}, "{}"}};
  std::string path = WriteTemp("rt.jsonl", "");
  ASSERT_TRUE(WriteJsonl(in, path).ok());
  auto out = LoadJsonl(path);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ((*out)[0].question, in[0].question);
  EXPECT_EQ((*out)[0].answers, in[0].answers);
  EXPECT_EQ((*out)[0].metadata_json, in[0].metadata_json);
}

std::vector<Example> Numbered(int n) {
  std::vector<Example> v;
  for (int i = 0; i < n; ++i) v.push_back({std::to_string(i), "q", {"a"}, "{}"});
  return v;
}

TEST(DatasetTest, ShardsPartitionTheExamples) {
  auto all = Numbered(10);
  std::multiset<std::string> seen;
  for (int s = 0; s < 3; ++s) {
    auto shard = Shard(all, s, 3);
    ASSERT_TRUE(shard.ok());
    for (const auto& ex : *shard) seen.insert(ex.id);
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 10u);
  EXPECT_FALSE(Shard(all, 3, 3).ok());
  EXPECT_FALSE(Shard(all, 0, 0).ok());
}

TEST(ExampleStreamTest, EveryEpochVisitsEachExampleOnceInANewOrder) {
  ExampleStream stream(Numbered(20), /*seed=*/7);
  std::vector<std::string> first, second;
  for (int i = 0; i < 20; ++i) first.push_back(stream.Next().id);
  EXPECT_EQ(stream.cursor().epoch, 1u);
  for (int i = 0; i < 20; ++i) second.push_back(stream.Next().id);
  EXPECT_EQ(std::set<std::string>(first.begin(), first.end()).size(), 20u);
  EXPECT_EQ(std::set<std::string>(second.begin(), second.end()).size(), 20u);
  EXPECT_NE(first, second);
}

TEST(ExampleStreamTest, ResumesExactlyFromACursor) {
  ExampleStream a(Numbered(13), /*seed=*/3);
  for (int i = 0; i < 17; ++i) a.Next();
  DataCursor saved = a.cursor();
  ExampleStream b(Numbered(13), /*seed=*/3, saved);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(a.Next().id, b.Next().id) << i;
}

}  // namespace
}  // namespace nbrl::agent
