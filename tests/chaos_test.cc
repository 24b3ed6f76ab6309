// Chaos under `nbrl launch`: a tiny real run (1 learner, 3 actors, 2 sandbox
// workers) while a driver with a fixed seed SIGKILLs random actors and sandbox
// workers at random times (the launcher restarts them with backoff), and once the
// learner (the launcher then stops the run and says how to resume; the test runs the
// same command again, which resumes from the newest checkpoint and replays the
// journal). The chaos goes on after the resume and stops two steps before
// learner.max_steps. Then exact accounting:
//
//   - the step log lists steps 1..max_steps once each, continuous across the resume;
//   - no group id is trained twice, and every step trained a full batch;
//   - the resumed learner logged the step it resumed at (the newest valid
//     checkpoint when the learner was killed);
//   - every checkpoint left verifies against its manifest, the last at max_steps;
//   - the launcher reported a restart for every process the driver killed.
//
// The seed is printed; NBRL_CHAOS_SEED=<n> replays another schedule (the kill
// times still depend on how fast the machine runs the steps).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "learner/checkpoint.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

using testutil::BinaryPath;
using testutil::Subprocess;

constexpr int kSteps = 14;
constexpr int kActors = 3;
constexpr int kBatchGroups = 3;  // one batch (1 group) from each actor
constexpr uint32_t kDefaultSeed = 20250917;

pid_t Pid(const std::string& run_dir, const std::string& name) {
  auto text = common::ReadFile(run_dir + "/logs/" + name + ".pid");
  int pid = -1;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid))
    return -1;
  return pid;
}

// True when `pid` is a live process (not a zombie) whose command line names
// `binary`, so a stale pid file or a recycled pid never sends a kill elsewhere.
bool AliveAs(pid_t pid, const std::string& binary) {
  if (pid <= 0) return false;
  auto stat = common::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return false;
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return false;
  const char state = (*stat)[paren + 2];
  if (state == 'Z' || state == 'X') return false;
  auto cmdline = common::ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  return cmdline.ok() && absl::StrContains(*cmdline, binary);
}

std::string BinaryOf(const std::string& name) {
  if (absl::StartsWith(name, "actor-")) return "nbrl-actor";
  if (absl::StartsWith(name, "sandbox-")) return "nbrl-sandbox";
  return "nbrl-learner";
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

uint32_t ChaosSeed() {
  const char* env = std::getenv("NBRL_CHAOS_SEED");
  uint32_t seed = kDefaultSeed;
  if (env != nullptr && *env != '\0' && !absl::SimpleAtoi(env, &seed)) {
    ADD_FAILURE() << "NBRL_CHAOS_SEED='" << env << "' is not a number";
    seed = kDefaultSeed;
  }
  return seed;
}

class ChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    auto run = testutil::MakeTinyRun(dir_);
    ASSERT_TRUE(run.ok()) << run.status();
    run_dir_ = dir_ + "/run";
    config_ = dir_ + "/run.yaml";
    ASSERT_TRUE(
        common::WriteFileAtomically(
            config_,
            absl::StrCat("run:\n  dir: ", run_dir_, "\nmodel:\n  path: ", run->model,
                         "\nprocess:\n  shutdown_grace: 5s\n"
                         "sandbox:\n  tools:\n    index: ",
                         run->index, "\nlearner:\n  batch_groups: ", kBatchGroups,
                         "\n  lr: 0.001\n  max_staleness: 100\n"
                         "  checkpoint_every: 2\n  keep_checkpoints: 3\n"
                         "  max_steps: ",
                         kSteps, "\nactor:\n  data: ", run->train,
                         "\n  group_size: 2\n  groups_per_batch: 1\n"
                         "  max_steps: 2\n  max_action_tokens: 32\n"
                         "  context_tokens: 2048\n"
                         "launch:\n  actors: ",
                         kActors, "\n  sandboxes: 2\n  max_backoff: 2s\n"))
            .ok());
  }

  // The same command every time: the second one resumes the run.
  std::unique_ptr<Subprocess> Launch() {
    auto p = Subprocess::Start({BinaryPath("cli/nbrl"), "launch", "--config", config_});
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  int64_t Steps() const {
    return static_cast<int64_t>(testutil::StepRecords(run_dir_).size());
  }

  testutil::TempDir tmp_{"nbrl-chaos"};
  std::string dir_, run_dir_, config_;
};

TEST_F(ChaosTest, RandomKillsUnderLaunchLoseAndRepeatNothing) {
  const uint32_t seed = ChaosSeed();
  std::cout << "chaos seed " << seed << " (NBRL_CHAOS_SEED=" << seed
            << " replays this schedule)" << std::endl;
  std::mt19937 rng(seed);
  auto uniform = [&rng](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  // The learner dies once, at an odd step: after a checkpoint exists
  // (checkpoint_every=2) and, usually, with steps past it to take again.
  const int learner_kill_step = 2 * uniform(1, 3) + 1;
  const std::vector<std::string> victims = {"actor-0", "actor-1", "actor-2",
                                            "sandbox-0", "sandbox-1"};
  const std::string root = run_dir_ + "/checkpoints";
  const absl::Time start = absl::Now();
  auto elapsed = [&start] { return absl::ToDoubleSeconds(absl::Now() - start); };

  std::vector<std::unique_ptr<Subprocess>> launches;
  launches.push_back(Launch());
  ASSERT_NE(launches.back(), nullptr);
  ASSERT_TRUE(testutil::WaitForSteps(run_dir_, 1, absl::Seconds(180)))
      << launches.back()->stderr_text();

  std::map<std::string, int> kills;  // actors and sandbox workers, by name
  bool learner_killed = false;
  int64_t resumed_at = -1, killed_at = -1;
  size_t learner_log_offset = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(400);
  while (true) {
    ASSERT_LT(absl::Now(), deadline)
        << "the run did not reach step " << kSteps - 2 << " in time; launcher:\n"
        << launches.back()->stderr_text();
    // Sleep 1-4 s while reading the launcher's output.
    auto exited = launches.back()->Wait(absl::Milliseconds(uniform(1000, 4000)));
    // Only the end of the run ends the launcher here (steps can be fast).
    if (exited.ok()) {
      ASSERT_TRUE(WIFEXITED(*exited) && WEXITSTATUS(*exited) == 0)
          << launches.back()->stderr_text();
      break;
    }
    const int64_t steps = Steps();
    if (!learner_killed && steps >= learner_kill_step) {
      const pid_t learner = Pid(run_dir_, "learner-0");
      ASSERT_TRUE(AliveAs(learner, "nbrl-learner"));
      std::cout << absl::StrFormat("chaos +%.1fs step %d: SIGKILL learner-0 (pid %d)",
                                   elapsed(), steps, learner)
                << std::endl;
      ASSERT_EQ(::kill(learner, SIGKILL), 0);
      learner_killed = true;
      // The launcher stops the run and says how to resume it.
      auto status = launches.back()->Wait(absl::Seconds(120));
      ASSERT_TRUE(status.ok()) << status.status();
      const std::string& err = launches.back()->stderr_text();
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << err;
      EXPECT_TRUE(absl::StrContains(err, "learner-0 failed (killed by SIGKILL)"))
          << err;
      EXPECT_TRUE(absl::StrContains(err, "Resume with: nbrl launch --config")) << err;
      for (const std::string& name : victims) {
        EXPECT_FALSE(AliveAs(Pid(run_dir_, name), BinaryOf(name)))
            << name << " outlived the failed launcher";
      }
      // The resume must start from the newest checkpoint that verifies.
      auto newest = learner::FindLatestCheckpoint(root, nullptr);
      ASSERT_TRUE(newest.ok()) << newest.status();
      resumed_at = newest->step;
      ASSERT_GE(resumed_at, 2);
      killed_at = Steps();
      auto log = common::ReadFile(run_dir_ + "/logs/learner-0.log");
      learner_log_offset = log.ok() ? log->size() : 0;

      std::map<std::string, pid_t> old_actors;
      for (int a = 0; a < kActors; ++a) {
        const std::string name = absl::StrCat("actor-", a);
        old_actors[name] = Pid(run_dir_, name);
      }
      std::cout << absl::StrFormat(
                       "chaos +%.1fs: launcher stopped the run; resuming (newest "
                       "checkpoint: step %d)",
                       elapsed(), resumed_at)
                << std::endl;
      launches.push_back(Launch());
      ASSERT_NE(launches.back(), nullptr);
      // The chaos continues once the launcher has started every actor again (it
      // gives up when a sandbox worker dies before it is ready).
      const absl::Time up_by = absl::Now() + absl::Seconds(240);
      auto all_up = [&] {
        for (const auto& [name, old] : old_actors) {
          const pid_t now = Pid(run_dir_, name);
          if (now == old || !AliveAs(now, "nbrl-actor")) return false;
        }
        return true;
      };
      while (!all_up()) {
        ASSERT_LT(absl::Now(), up_by) << launches.back()->stderr_text();
        auto early = launches.back()->Wait(absl::Milliseconds(200));
        ASSERT_FALSE(early.ok()) << "the resumed launcher exited early:\n"
                                 << launches.back()->stderr_text();
      }
      continue;
    }
    if (steps >= kSteps - 2) break;  // the last steps run in peace
    std::vector<std::pair<std::string, pid_t>> alive;
    for (const std::string& name : victims) {
      const pid_t pid = Pid(run_dir_, name);
      if (AliveAs(pid, BinaryOf(name))) alive.emplace_back(name, pid);
    }
    if (alive.empty()) continue;
    const auto& [name, pid] = alive[uniform(0, static_cast<int>(alive.size()) - 1)];
    std::cout << absl::StrFormat("chaos +%.1fs step %d: SIGKILL %s (pid %d)", elapsed(),
                                 steps, name, pid)
              << std::endl;
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ++kills[name];
  }
  ASSERT_TRUE(learner_killed) << "the run ended before step " << learner_kill_step;

  auto status = launches.back()->Wait(absl::Seconds(300));
  ASSERT_TRUE(status.ok()) << status.status();
  const std::string& err = launches.back()->stderr_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << err;
  EXPECT_TRUE(absl::StrContains(err, "run finished")) << err;
  std::cout << absl::StrFormat("chaos +%.1fs: run finished", elapsed()) << std::endl;
  for (const std::string& name : victims) {
    EXPECT_FALSE(AliveAs(Pid(run_dir_, name), BinaryOf(name)))
        << name << " outlived the launcher";
  }

  // Every kill of an actor or sandbox worker was seen and answered by a restart.
  std::string all_err;
  for (const auto& l : launches) all_err += l->stderr_text();
  EXPECT_TRUE(absl::StrContains(all_err, "restarting in")) << all_err;
  int total_kills = 0;
  for (const auto& [name, n] : kills) {
    total_kills += n;
    EXPECT_EQ(CountOf(all_err, absl::StrCat("nbrl launch: ", name,
                                            " killed by SIGKILL; restarting in")),
              n)
        << name << " was killed " << n << " times; launcher:\n"
        << all_err;
  }
  EXPECT_GE(total_kills, 3) << "too little chaos to mean anything";

  // The resumed learner continued from the newest valid checkpoint.
  auto log = common::ReadFile(run_dir_ + "/logs/learner-0.log");
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_LE(learner_log_offset, log->size());
  const std::string resumed_log = log->substr(learner_log_offset);
  const std::string resumed = absl::StrCat(" at step ", resumed_at, "; ");
  const size_t at = resumed_log.find(resumed);
  ASSERT_NE(at, std::string::npos) << resumed_log;
  // The groups trained in the steps lost with the learner were acknowledged after
  // (or queued at) the checkpoint: the journal gives them back.
  const size_t count = at + resumed.size();
  int replayed = -1;
  EXPECT_TRUE(absl::SimpleAtoi(
      resumed_log.substr(count, resumed_log.find(' ', count) - count), &replayed))
      << resumed_log.substr(at, 120);
  EXPECT_GE(replayed, kBatchGroups * (killed_at - resumed_at))
      << "killed at step " << killed_at << ", resumed at step " << resumed_at;

  // Exact accounting: steps 1..kSteps once each, every group trained once.
  const std::vector<nlohmann::json> steps = testutil::StepRecords(run_dir_);
  ASSERT_EQ(steps.size(), static_cast<size_t>(kSteps));
  std::set<std::string> trained;
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].value("step", int64_t{-1}), static_cast<int64_t>(i + 1));
    ASSERT_TRUE(steps[i].contains("groups")) << steps[i].dump();
    EXPECT_EQ(steps[i]["groups"].size(), static_cast<size_t>(kBatchGroups))
        << steps[i].dump();
    for (const auto& id : steps[i]["groups"]) {
      EXPECT_TRUE(trained.insert(id.get<std::string>()).second)
          << "group " << id << " trained twice (step " << i + 1 << ")";
    }
  }
  EXPECT_EQ(trained.size(), static_cast<size_t>(kSteps * kBatchGroups));

  // Every checkpoint left behind verifies; the newest is the last step.
  int verified = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !absl::StartsWith(name, "step-") ||
        absl::EndsWith(name, ".tmp")) {
      continue;
    }
    auto info = learner::VerifyCheckpoint(entry.path().string());
    EXPECT_TRUE(info.ok()) << name << ": " << info.status();
    ++verified;
  }
  EXPECT_GE(verified, 1);
  auto last = learner::FindLatestCheckpoint(root, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->step, kSteps);
  std::cout << "chaos: " << total_kills << " kills of actors and sandbox workers, "
            << "learner killed at step " << killed_at << ", resumed at step "
            << resumed_at << " (" << replayed << " groups from the journal), "
            << verified << " checkpoints verified, "
            << absl::StrFormat("%.0f s", elapsed()) << std::endl;
}

}  // namespace
}  // namespace nbrl
