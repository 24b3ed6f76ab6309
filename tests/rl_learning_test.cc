// Reward rises under RL, end to end with real processes. A task the tiny model can
// learn in a test's time: every question's answer is "yes" (the minimal family,
// exact match). The warm start is `nbrl launch` in SFT mode on the scripted
// expert's one-action demonstrations, half of which submit "yes1" instead, so the
// warm-started policy answers right about half the time at temperature 1. Then
// `nbrl launch` in RL mode (a learner, two actors, a sandbox worker, GRPO at
// temperature 1) must raise it: the RL checkpoint's exact match on held-out
// questions (`nbrl eval`, 4 samples each; odd numbers where training has even
// ones, so a tiny model's tokens stay in its distribution) beats the warm start's by
// at least 0.2, and the last steps' batch EM beats the first steps'. A run that
// falls short is repeated with another seed, up to three runs (see the test).
//
// What this catches: a flipped advantage or loss sign, behaviour log-probs or
// masks misaligned with the learner's, weights never reaching the actors, a
// schedule or clip that stalls learning. Any of them leaves EM flat or falling.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

using testutil::BinaryPath;

constexpr int kSftSteps = 120;
constexpr int kRlSteps = 24;

// Questions first, first + step, ... (count of them).
std::string Questions(int first, int step, int count) {
  std::string out;
  for (int k = 0, i = first; k < count; ++k, i += step) {
    nlohmann::json q = {{"id", absl::StrCat("y", i)},
                        {"question", absl::StrCat("Question ", i, ": say yes.")},
                        {"answers", {"yes"}}};
    absl::StrAppend(&out, q.dump(), "\n");
  }
  return out;
}

// Mean of records[from, to) field `key`.
double Mean(const std::vector<nlohmann::json>& records, size_t from, size_t to,
            const char* key) {
  double sum = 0;
  for (size_t i = from; i < to; ++i) sum += records[i].value(key, 0.0);
  return to > from ? sum / static_cast<double>(to - from) : 0.0;
}

class RlLearningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    ASSERT_TRUE(
        common::WriteFileAtomically(dir_ + "/train.jsonl", Questions(0, 2, 32)).ok());
    ASSERT_TRUE(
        common::WriteFileAtomically(dir_ + "/test.jsonl", Questions(1, 2, 16)).ok());

    // The sandbox worker for the demonstrations and the evaluations (nbrl launch
    // starts its own).
    sandbox_ = "unix:" + dir_ + "/sandbox.sock";
    auto server = testutil::Subprocess::Start(
        {BinaryPath("sandbox_worker/nbrl-sandbox"), "serve",
         "sandbox.address=" + sandbox_, "run.dir=" + dir_ + "/sandbox",
         "metrics.enabled=false", "log.level=warning"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->WaitForLine("ready", absl::Seconds(60)).ok());

    // As deploy/quickstart.sh makes its model: a bootstrap tokenizer, the scripted
    // expert's episodes, then a tokenizer trained on the questions and those
    // episodes with a random 2-layer Qwen2-shaped model (about 190k parameters).
    ASSERT_NO_FATAL_FAILURE(Run({BinaryPath("cli/nbrl"), "init-model", "--out",
                                 dir_ + "/bootstrap", "--text", dir_ + "/train.jsonl",
                                 "--vocab", "300", "--hidden", "16", "--layers", "1"}));
    ASSERT_NO_FATAL_FAILURE(
        Run({BinaryPath("cli/nbrl"), "eval", "--policy", "scripted", "--tokenizer",
             dir_ + "/bootstrap", "--data", dir_ + "/train.jsonl", "--family",
             "minimal", "--sandbox", sandbox_, "--out", dir_ + "/demos", "--noise",
             "0.5", "--max-steps", "2"}));
    model_ = dir_ + "/model0";
    ASSERT_NO_FATAL_FAILURE(
        Run({BinaryPath("cli/nbrl"), "init-model", "--out", model_, "--text",
             dir_ + "/train.jsonl," + dir_ + "/demos/episodes.jsonl", "--vocab", "512",
             "--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
             "--positions", "2048"}));
  }

  void TearDown() override {
    if (server_ == nullptr) return;
    ASSERT_TRUE(server_->Signal(SIGTERM).ok());
    auto st = server_->Wait(absl::Seconds(30));
    EXPECT_TRUE(st.ok() && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << server_->stderr_text();
  }

  static void Run(const std::vector<std::string>& argv) {
    auto r = testutil::RunCommand(argv, absl::Seconds(300));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << argv[1] << ": " << r->err;
  }

  // Runs `nbrl launch` on `yaml` to its learner.max_steps.
  void Launch(const std::string& name, const std::string& yaml) {
    const std::string config = dir_ + "/" + name + ".yaml";
    ASSERT_TRUE(common::WriteFileAtomically(config, yaml).ok());
    auto r = testutil::RunCommand(
        {BinaryPath("cli/nbrl"), "launch", "--config", config}, absl::Seconds(600));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << r->err;
  }

  // Held-out exact match of a checkpoint at temperature 1 under the RL limits.
  double HeldOutEm(const std::string& checkpoint, const std::string& out) {
    auto r = testutil::RunCommand({BinaryPath("cli/nbrl"),
                                   "eval",
                                   "--policy",
                                   checkpoint,
                                   "--data",
                                   dir_ + "/test.jsonl",
                                   "--family",
                                   "minimal",
                                   "--sandbox",
                                   sandbox_,
                                   "--out",
                                   dir_ + "/" + out,
                                   "--samples",
                                   "4",
                                   "--max-steps",
                                   "2",
                                   "--max-action-tokens",
                                   "48",
                                   "--max-format-errors",
                                   "1",
                                   "--temperature",
                                   "1",
                                   "--seed",
                                   "5"},
                                  absl::Seconds(300));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return -1;
    EXPECT_EQ(r->exit_code, 0) << r->err;
    std::cerr << out << ": " << r->out;
    auto summary = common::ReadFile(dir_ + "/" + out + "/summary.json");
    if (!summary.ok()) return -1;
    return nlohmann::json::parse(*summary)["em"]["mean"].get<double>();
  }

  testutil::TempDir tmp_{"nbrl-rl-learning"};
  std::string dir_, model_, sandbox_;
  std::unique_ptr<testutil::Subprocess> server_;
};

TEST_F(RlLearningTest, RewardRisesFromAHalfRightWarmStart) {
  const std::string common_yaml = absl::StrCat(
      "model:\n  path: MODEL\nactor:\n  data: ", dir_,
      "/train.jsonl\n  family: minimal\n  max_steps: 2\n  max_action_tokens: 48\n"
      "  context_tokens: 2048\n");
  auto with_model = [&](std::string yaml, const std::string& path) {
    yaml.replace(yaml.find("MODEL"), 5, path);
    return yaml;
  };
  // Warm start: SFT on demonstrations that are right half the time.
  Launch("sft", absl::StrCat(with_model(common_yaml, model_),
                             "  policy: scripted\n  noise: 0.5\n  group_size: 4\n"
                             "  groups_per_batch: 2\nlearner:\n  mode: sft\n"
                             "  batch_groups: 2\n  lr: 0.01\n  max_steps: ",
                             kSftSteps, "\n  checkpoint_every: 1000\nrun:\n  dir: ",
                             dir_, "/sft\nlaunch:\n  actors: 1\n"));
  const std::string warm =
      absl::StrFormat("%s/sft/checkpoints/step-%08d", dir_, kSftSteps);
  ASSERT_TRUE(std::filesystem::exists(warm + "/manifest.json")) << warm;

  const double before = HeldOutEm(warm, "eval-sft");
  EXPECT_GE(before, 0.25) << "the warm start did not learn the action format";
  EXPECT_LE(before, 0.7) << "the warm start leaves RL too little to show";

  // RL from the warm start. The cosine schedule matters: at a constant 0.001, 2 of
  // 11 runs ended with a checkpoint that wrote malformed actions on the held-out
  // questions (held-out EM 0.44 and 0.70 from 0.55, with batch EM near 1); with the
  // decay, 10 of 10 ended between 0.91 and 0.98. Later one CI run ended at 0.625
  // (23 of 64 held-out episodes malformed, batch EM 1.00), and of 14 runs on one VM
  // one ended at 0.69 and the rest between 0.73 and 0.97: RL at this lr sometimes
  // costs a tiny model its action format on the odd-numbered questions. So a run
  // that falls short is repeated with another seed, up to three runs, and the last
  // must pass: a real defect (see the top) fails every one.
  struct Outcome {
    double first = 0, last = 0, after = -1;
    std::string trace;
    bool passed(double before) const { return last > first && after >= before + 0.2; }
  };
  auto rl = [&](int seed) {
    const std::string name = absl::StrCat("rl-", seed);
    Outcome o;
    Launch(name,
           absl::StrCat(with_model(common_yaml, warm),
                        "  policy: model\n  temperature: 1.0\n  group_size: 8\n"
                        "  groups_per_batch: 1\n  max_format_errors: 1\n"
                        "learner:\n  mode: rl\n  advantage: grpo\n"
                        "  batch_groups: 2\n  lr: 0.001\n  schedule: cosine\n"
                        "  max_staleness: 1\n  max_steps: ",
                        kRlSteps, "\n  checkpoint_every: 1000\nrun:\n  dir: ", dir_,
                        "/", name, "\n  seed: ", seed, "\nlaunch:\n  actors: 2\n"));
    const std::string trained =
        absl::StrFormat("%s/%s/checkpoints/step-%08d", dir_, name, kRlSteps);
    EXPECT_TRUE(std::filesystem::exists(trained + "/manifest.json")) << trained;
    const std::vector<nlohmann::json> steps = testutil::StepRecords(dir_ + "/" + name);
    EXPECT_EQ(steps.size(), static_cast<size_t>(kRlSteps));
    if (steps.size() != static_cast<size_t>(kRlSteps)) return o;
    for (const auto& s : steps)
      absl::StrAppendFormat(&o.trace, " %.2f", s.value("em_mean", 0.0));
    o.first = Mean(steps, 0, 4, "em_mean");
    o.last = Mean(steps, kRlSteps - 5, kRlSteps, "em_mean");
    o.after = HeldOutEm(trained, "eval-" + name);
    return o;
  };
  Outcome o = rl(1);
  for (int seed = 2; seed <= 3 && !HasFailure() && !o.passed(before); ++seed) {
    std::cerr << "RL run " << seed - 1 << " fell short (held-out EM " << before
              << " -> " << o.after << "; batch EM per step:" << o.trace
              << "); again with seed " << seed << "\n";
    o = rl(seed);
  }
  EXPECT_GT(o.last, o.first) << "batch EM per step:" << o.trace;
  EXPECT_GE(o.after, before + 0.2) << "held-out EM " << before << " -> " << o.after
                                   << "; batch EM per step:" << o.trace;
}

}  // namespace
}  // namespace nbrl
