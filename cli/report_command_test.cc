// `nbrl report`, run as the real binary on summary files written here: the table's
// numbers on stdout and in report.md, report.json's before / after / delta, the
// curve from a step log, and clear errors for missing or malformed input.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Summaries shaped like agent::SummaryJson's output.
constexpr char kBefore[] = R"({
  "questions": 4, "episodes": 4,
  "em": {"mean": 0.25, "stderr": 0.1},
  "f1": {"mean": 0.4, "stderr": 0.05},
  "pass_at_k": 0.25, "mean_steps": 5.5, "mean_reward": 0.3,
  "endings": {"max_steps": 1, "submitted": 3},
  "em_by_kind": {"bridge": 0.0, "lookup": 0.5},
  "count_by_kind": {"bridge": 2, "lookup": 2},
  "errors": {"malformed_action": 6, "no_answer": 1}
})";
constexpr char kAfter[] = R"({
  "questions": 4, "episodes": 4,
  "em": {"mean": 0.5, "stderr": 0.12},
  "f1": {"mean": 0.6, "stderr": 0.06},
  "pass_at_k": 0.5, "mean_steps": 4.25, "mean_reward": 0.7,
  "endings": {"submitted": 4},
  "em_by_kind": {"comparison": 0.0, "lookup": 1.0},
  "count_by_kind": {"comparison": 2, "lookup": 2},
  "errors": {"malformed_action": 2},
  "step_errors": [
    {"error": "AssertionError: the question has another form", "episodes": 2,
     "steps": 3},
    {"error": "<code> blocks cannot be nested", "episodes": 1, "steps": 1}
  ],
  "step_errors_not_listed": {"errors": 0, "steps": 0}
})";

class ReportCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    Write("before/summary.json", kBefore);
    Write("after/summary.json", kAfter);
    Write("steps.jsonl",
          "{\"step\": 1, \"loss\": 2.5, \"reward_mean\": 0.1, \"em_mean\": 0, "
          "\"lr\": 0.001}\n"
          "{\"step\": 2, \"loss\": 1.25, \"reward_mean\": 0.4, \"em_mean\": 0.5}\n");
  }

  void Write(const std::string& name, const std::string& text) {
    ASSERT_TRUE(common::WriteFileAtomically(dir_ + "/" + name, text).ok());
  }

  testutil::RunResult Report(std::vector<std::string> args) {
    args.insert(args.begin(), {testutil::BinaryPath("cli/nbrl"), "report"});
    auto r = testutil::RunCommand(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : testutil::RunResult{};
  }

  std::string Read(const std::string& name) {
    auto text = common::ReadFile(dir_ + "/" + name);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : "";
  }

  testutil::TempDir tmp_{"report_"};  // NBRL_KEEP_TEST_TMP=1 keeps it for a look
  std::string dir_;
};

TEST_F(ReportCommandTest, PrintsAndWritesTheComparison) {
  auto r = Report({"--before", dir_ + "/before", "--after", dir_ + "/after", "--steps",
                   dir_ + "/steps.jsonl", "--out", dir_ + "/report"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // stdout: an aligned text table with the same cells.
  EXPECT_THAT(r.out, HasSubstr("warm-start"));
  EXPECT_THAT(r.out, HasSubstr("0.250 ± 0.100  0.500 ± 0.120  +0.250 ± 0.156"));
  EXPECT_THAT(r.out, HasSubstr("wrote " + dir_ + "/report/report.md"));

  const std::string md = Read("report/report.md");
  EXPECT_THAT(md, HasSubstr("| | warm-start | RL | change |"));
  EXPECT_THAT(md, HasSubstr("| questions / episodes | 4 / 4 | 4 / 4 |  |"));
  EXPECT_THAT(md, HasSubstr("| EM | 0.250 ± 0.100 | 0.500 ± 0.120 | +0.250 ± 0.156 |"));
  EXPECT_THAT(md, HasSubstr("| F1 | 0.400 ± 0.050 | 0.600 ± 0.060 | +0.200 ± 0.078 |"));
  EXPECT_THAT(md, HasSubstr("| pass@k | 0.250 | 0.500 | +0.250 |"));
  EXPECT_THAT(md, HasSubstr("| mean reward | 0.300 | 0.700 | +0.400 |"));
  EXPECT_THAT(md, HasSubstr("| mean steps | 5.50 | 4.25 | -1.25 |"));
  EXPECT_THAT(md, HasSubstr("| ending max_steps | 0.250 (1) | 0.000 (0) | -0.250 |"));
  EXPECT_THAT(md, HasSubstr("| ending submitted | 0.750 (3) | 1.000 (4) | +0.250 |"));
  EXPECT_THAT(md, HasSubstr("| EM lookup | 0.500 (2) | 1.000 (2) | +0.500 |"));
  EXPECT_THAT(md, HasSubstr("| EM bridge | 0.000 (2) | - |  |"));
  EXPECT_THAT(md, HasSubstr("| EM comparison | - | 0.000 (2) |  |"));
  EXPECT_THAT(md,
              HasSubstr("| errors/episode malformed_action | 1.50 | 0.50 | -1.00 |"));
  EXPECT_THAT(md, HasSubstr("| errors/episode no_answer | 0.25 | 0.00 | -0.25 |"));
  // Step errors: kBefore has none (an older summary), kAfter two; most episodes
  // first.
  // An older summary's side is unknown ("-"), not zero.
  EXPECT_THAT(md, HasSubstr("| error: AssertionError: the question has another form "
                            "| - | 0.500 (2) |  |\n"
                            "| error: <code> blocks cannot be nested | - | 0.250 (1) "
                            "|  |"));
  EXPECT_THAT(md, HasSubstr("Training: 2 steps"));

  auto j = nlohmann::json::parse(Read("report/report.json"), nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["labels"]["before"], "warm-start");
  EXPECT_EQ(j["labels"]["after"], "RL");
  EXPECT_DOUBLE_EQ(j["before"]["em"]["mean"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["after"]["em"]["mean"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["after"]["ending_share"]["submitted"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["delta"]["em"].get<double>(), 0.25);
  EXPECT_NEAR(j["delta"]["em_stderr"].get<double>(), 0.156205, 1e-6);
  EXPECT_NEAR(j["delta"]["f1"].get<double>(), 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(j["delta"]["mean_steps"].get<double>(), -1.25);
  EXPECT_DOUBLE_EQ(j["delta"]["ending_share"]["max_steps"].get<double>(), -0.25);
  EXPECT_DOUBLE_EQ(j["delta"]["em_by_kind"]["lookup"].get<double>(), 0.5);
  EXPECT_FALSE(j["delta"]["em_by_kind"].contains("bridge"));  // not on both sides
  EXPECT_DOUBLE_EQ(j["delta"]["errors_per_episode"]["malformed_action"].get<double>(),
                   -1.0);
  EXPECT_EQ(j["after"]["step_errors"][0]["steps"], 3);
  EXPECT_TRUE(j["before"]["step_errors"].empty());
  EXPECT_EQ(j["steps"]["records"], 2);
  EXPECT_DOUBLE_EQ(j["steps"]["last"]["reward_mean"].get<double>(), 0.4);

  EXPECT_EQ(Read("report/curve.tsv"),
            "# step\treward_mean\tem_mean\tloss\n1\t0.1\t0\t2.5\n2\t0.4\t0.5\t1.25\n");
}

TEST_F(ReportCommandTest, TakesSummaryFilesLabelsAndNoSteps) {
  auto r = Report({"--before", dir_ + "/after/summary.json", "--after",
                   dir_ + "/before/summary.json", "--out", dir_ + "/r2",
                   "--label-before", "sft", "--label-after", "rl-step-60"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string md = Read("r2/report.md");
  EXPECT_THAT(md, HasSubstr("| | sft | rl-step-60 | change |"));
  EXPECT_THAT(md, HasSubstr("| EM | 0.500 ± 0.120 | 0.250 ± 0.100 | -0.250 ± 0.156 |"));
  EXPECT_THAT(md, Not(HasSubstr("Training:")));
  EXPECT_FALSE(common::ReadFile(dir_ + "/r2/curve.tsv").ok());
  auto j = nlohmann::json::parse(Read("r2/report.json"), nullptr, false);
  EXPECT_DOUBLE_EQ(j["delta"]["em"].get<double>(), -0.25);
  EXPECT_FALSE(j.contains("steps"));
}

TEST_F(ReportCommandTest, MissingOrMalformedInputIsAClearError) {
  const std::string after = dir_ + "/after";
  auto missing = Report({"--before", dir_ + "/nope", "--after", after, "--out", dir_});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr(dir_ + "/nope/summary.json"));

  Write("bad/summary.json", "{\"questions\": 4,");
  auto bad = Report({"--before", dir_ + "/bad", "--after", after, "--out", dir_});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr(dir_ + "/bad/summary.json: not a JSON object"));

  std::string no_stderr = kAfter;
  no_stderr.replace(no_stderr.find(", \"stderr\": 0.12"), 16, "");
  Write("nostderr/summary.json", no_stderr);
  auto field =
      Report({"--before", after, "--after", dir_ + "/nostderr", "--out", dir_});
  EXPECT_EQ(field.exit_code, 1);
  EXPECT_THAT(field.err,
              HasSubstr(dir_ + "/nostderr/summary.json: missing field \"em.stderr\""));

  std::string bad_count = kAfter;
  bad_count.replace(bad_count.find("\"submitted\": 4"), 14, "\"submitted\": \"4\"");
  Write("badcount/summary.json", bad_count);
  auto type = Report({"--before", after, "--after", dir_ + "/badcount", "--out", dir_});
  EXPECT_EQ(type.exit_code, 1);
  EXPECT_THAT(type.err, HasSubstr("field \"endings.submitted\" must be a number"));

  std::string bad_errors = kAfter;
  bad_errors.replace(bad_errors.find("\"step_errors\": ["), 16,
                     "\"step_errors\": {\"x\": 1}, \"y\": [");
  Write("baderrors/summary.json", bad_errors);
  auto errors =
      Report({"--before", after, "--after", dir_ + "/baderrors", "--out", dir_});
  EXPECT_EQ(errors.exit_code, 1);
  EXPECT_THAT(errors.err, HasSubstr("field \"step_errors\" must be a list"));
  std::string no_steps = kAfter;
  no_steps.replace(no_steps.find("\"steps\": 1}"), 11, "\"stepz\": 1}");
  Write("nosteps/summary.json", no_steps);
  auto entry = Report({"--before", after, "--after", dir_ + "/nosteps", "--out", dir_});
  EXPECT_EQ(entry.exit_code, 1);
  EXPECT_THAT(entry.err, HasSubstr("missing field \"steps\""));

  Write("steps-bad.jsonl",
        "{\"step\": 1, \"loss\": 2.5, \"reward_mean\": 0.1, \"em_mean\": 0}\n"
        "{\"step\": 2, \"loss\": 2.5, \"em_mean\": 0}\n");
  auto steps = Report({"--before", after, "--after", after, "--steps",
                       dir_ + "/steps-bad.jsonl", "--out", dir_ + "/r3"});
  EXPECT_EQ(steps.exit_code, 1);
  EXPECT_THAT(steps.err, HasSubstr("steps-bad.jsonl:2: missing field \"reward_mean\""));
  EXPECT_FALSE(common::ReadFile(dir_ + "/r3/report.md").ok());  // nothing written

  auto usage = Report({"--before", after, "--after", after});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("--out is required"));
}

TEST_F(ReportCommandTest, StepErrorRowsAreTheMostCommonCutAndEscaped) {
  // Eight errors over both sides: the six touching the most episodes on either
  // side are shown, a long one is cut, a '|' is escaped in the Markdown.
  std::string long_error =
      "NameError: name '" + std::string(80, 'x') + "' is not defined";
  nlohmann::json before = nlohmann::json::parse(kBefore);
  nlohmann::json after = nlohmann::json::parse(kAfter);
  before["step_errors"] = nlohmann::json::array();
  after["step_errors"] = nlohmann::json::array();
  for (int i = 0; i < 6; ++i) {
    before["step_errors"].push_back(
        {{"error", "E" + std::to_string(i)}, {"episodes", 10 - i}, {"steps", 10 - i}});
  }
  after["step_errors"].push_back(
      {{"error", long_error}, {"episodes", 9}, {"steps", 9}});
  after["step_errors"].push_back(
      {{"error", "SyntaxError: a | b"}, {"episodes", 8}, {"steps", 8}});
  before["step_errors_not_listed"] = {{"errors", 0}, {"steps", 0}};
  after["step_errors_not_listed"] = {{"errors", 3}, {"steps", 4}};
  before["episodes"] = 20;
  after["episodes"] = 20;
  Write("b5/summary.json", before.dump());
  Write("a5/summary.json", after.dump());
  auto r = Report(
      {"--before", dir_ + "/b5", "--after", dir_ + "/a5", "--out", dir_ + "/r5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string md = Read("r5/report.md");
  // The after side left 3 errors out of its list: E0 may be among them.
  EXPECT_THAT(md, HasSubstr("| error: E0 | 0.500 (10) | - |  |"));
  EXPECT_THAT(md, HasSubstr("| error: E3 | 0.350 (7) | - |  |"));
  EXPECT_THAT(md, Not(HasSubstr("error: E4")));  // 6 episodes: not among the six
  // The before side lists all of its errors: SyntaxError is known to be absent.
  EXPECT_THAT(md, HasSubstr("| error: SyntaxError: a \\| b | 0.000 (0) | 0.400 (8) | "
                            "+0.400 |"));
  EXPECT_THAT(md, HasSubstr("| error: NameError: name '" + std::string(47, 'x') +
                            "... | 0.000 (0) | 0.450 (9) |"));
  // The text table keeps the '|' as it is.
  EXPECT_THAT(r.out, HasSubstr("error: SyntaxError: a | b"));
}

TEST_F(ReportCommandTest, ATornLastStepLineIsSkipped) {
  Write("steps-torn.jsonl",
        "{\"step\": 1, \"loss\": 2.5, \"reward_mean\": 0.1, \"em_mean\": 0}\n"
        "{\"step\": 2, \"loss\": 2");
  auto r = Report({"--before", dir_ + "/before", "--after", dir_ + "/after", "--steps",
                   dir_ + "/steps-torn.jsonl", "--out", dir_ + "/r4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("steps-torn.jsonl:2: skipping a torn last line"));
  EXPECT_EQ(Read("r4/curve.tsv"),
            "# step\treward_mean\tem_mean\tloss\n1\t0.1\t0\t2.5\n");
}

}  // namespace
}  // namespace nbrl::cli
