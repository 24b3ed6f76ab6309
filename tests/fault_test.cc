// Faults during a real run (nbrl-sandbox, nbrl-learner, two nbrl-actor processes on
// loopback), then exact accounting:
//
//   1. an actor is killed with SIGKILL mid-run and restarted in the same slot: it
//      continues its data where its accepted groups left off;
//   2. the learner is killed with SIGKILL, its newest checkpoint is corrupted, and it
//      is restarted on the same port: it skips the corrupt checkpoint, resumes from
//      the one before, replays the journal of acknowledged groups, and the actors
//      reconnect and re-send what was never acknowledged;
//   3. the run finishes: steps 1..N each appear once in the step log, no group id is
//      trained twice, and the last checkpoint verifies.
//
// And a disk that stops syncing: the journal begun at a checkpoint is /dev/null
// (writes succeed, fdatasync fails). The learner stops with a clear error and no
// new checkpoint; restarted on a good disk, it finishes with the same accounting.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    auto run = testutil::MakeTinyRun(dir_);
    ASSERT_TRUE(run.ok()) << run.status();
    run_ = *run;
    sock_ = "unix:" + dir_ + "/sandbox.sock";
    auto sandbox = Subprocess::Start(
        {BinaryPath("sandbox_worker/nbrl-sandbox"), "serve", "sandbox.address=" + sock_,
         "sandbox.tools.index=" + run_.index, "run.dir=" + dir_, "log.level=warning",
         "metrics.enabled=false"});
    ASSERT_TRUE(sandbox.ok());
    sandbox_ = std::move(*sandbox);
    ASSERT_TRUE(sandbox_->WaitForLine("ready", absl::Seconds(60)).ok());
  }

  std::unique_ptr<Subprocess> StartLearner(const std::string& address) {
    auto p = Subprocess::Start(
        {BinaryPath("learner/nbrl-learner"), "model.path=" + run_.model,
         "run.dir=" + dir_, "learner.address=" + address, "learner.batch_groups=2",
         "learner.max_steps=" + std::to_string(kSteps), "learner.lr=1e-3",
         "learner.max_staleness=100", "learner.checkpoint_every=1",
         "learner.keep_checkpoints=3", "metrics.enabled=false"});
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  std::unique_ptr<Subprocess> StartActor(int rank, const std::string& learner) {
    auto p = Subprocess::Start(
        {BinaryPath("actor/nbrl-actor"), "model.path=" + run_.model, "run.dir=" + dir_,
         "process.rank=" + std::to_string(rank), "actor.shards=2",
         "actor.learner=" + learner, "actor.sandbox=" + sock_,
         "actor.data=" + run_.train, "actor.group_size=2", "actor.groups_per_batch=1",
         "actor.max_steps=2", "actor.max_action_tokens=32", "actor.context_tokens=2048",
         "metrics.enabled=false"});
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  // A restarted `learner` serves, and finishes the run with exit status 0.
  static void ExpectTheRunToFinish(Subprocess* learner) {
    ASSERT_NE(learner, nullptr);
    ASSERT_TRUE(learner->WaitForLine("ready address=", absl::Seconds(60)).ok())
        << learner->stderr_text();
    auto status = learner->Wait(absl::Seconds(300));
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << learner->stderr_text();
  }

  static constexpr int kSteps = 7;
  testutil::TempDir tmp_{"nbrl-fault"};  // outlives the processes below
  std::string dir_, sock_;
  testutil::TinyRun run_;
  std::unique_ptr<Subprocess> sandbox_;
};

// Steps 1..kSteps each once in the step log, and `groups_per_step` distinct groups
// in each: nothing trained twice, nothing lost.
void ExpectEachStepAndGroupOnce(const std::string& dir, int steps_wanted,
                                int groups_per_step) {
  std::vector<nlohmann::json> steps = testutil::StepRecords(dir);
  ASSERT_EQ(steps.size(), static_cast<size_t>(steps_wanted));
  std::set<std::string> trained;
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
    for (const auto& id : steps[i]["groups"]) {
      EXPECT_TRUE(trained.insert(id.get<std::string>()).second)
          << "group " << id << " trained twice";
    }
  }
  EXPECT_EQ(trained.size(), static_cast<size_t>(groups_per_step * steps_wanted));
}

TEST_F(FaultTest, KilledActorsAndLearnerLoseAndRepeatNothing) {
  std::unique_ptr<Subprocess> learner = StartLearner("127.0.0.1:0");
  ASSERT_NE(learner, nullptr);
  auto ready = learner->WaitForLine("ready address=", absl::Seconds(60));
  ASSERT_TRUE(ready.ok()) << ready.status();
  const std::string address = ready->substr(ready->find('=') + 1);
  std::unique_ptr<Subprocess> actors[2] = {StartActor(0, address),
                                           StartActor(1, address)};
  ASSERT_NE(actors[0], nullptr);
  ASSERT_NE(actors[1], nullptr);

  // 1. SIGKILL actor 1 after step 2, and restart it in the same slot.
  ASSERT_TRUE(testutil::WaitForSteps(dir_, 2, absl::Seconds(240)))
      << learner->stderr_text();
  ASSERT_TRUE(actors[1]->Signal(SIGKILL).ok());
  ASSERT_TRUE(actors[1]->Wait(absl::Seconds(30)).ok());
  actors[1] = StartActor(1, address);
  ASSERT_NE(actors[1], nullptr);
  ASSERT_TRUE(actors[1]->WaitForLine("ready", absl::Seconds(60)).ok())
      << actors[1]->stderr_text();

  // 2. SIGKILL the learner after step 4, corrupt its newest checkpoint, restart it.
  const std::string root = dir_ + "/checkpoints";
  absl::Time deadline = absl::Now() + absl::Seconds(240);
  while (absl::Now() < deadline) {
    auto c = learner::FindLatestCheckpoint(root, nullptr);
    if (c.ok() && c->step >= 4) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(learner->Signal(SIGKILL).ok());
  ASSERT_TRUE(learner->Wait(absl::Seconds(30)).ok());
  auto newest = learner::FindLatestCheckpoint(root, nullptr);
  ASSERT_TRUE(newest.ok()) << newest.status();
  ASSERT_GE(newest->step, 4);
  {
    std::fstream f(newest->dir + "/model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  const int64_t killed_at = static_cast<int64_t>(testutil::StepRecords(dir_).size());
  // 3. The run completes; the learner exits by itself and asks the actors to stop.
  learner = StartLearner(address);
  ASSERT_NO_FATAL_FAILURE(ExpectTheRunToFinish(learner.get()));
  const std::string& log = learner->stderr_text();
  EXPECT_TRUE(absl::StrContains(log, "fails verification")) << log;
  EXPECT_TRUE(absl::StrContains(
      log,
      absl::StrCat("resumed from ", learner::CheckpointDir(root, newest->step - 1))))
      << log;
  // The groups trained in the lost step were acknowledged after the checkpoint it
  // resumed from: only the journal has them.
  size_t at = log.find("acknowledged groups from the journal queued again");
  ASSERT_NE(at, std::string::npos) << log;
  size_t begin = log.rfind("; ", at);
  ASSERT_NE(begin, std::string::npos);
  EXPECT_GE(std::stoi(log.substr(begin + 2, at - begin - 2)), 2)
      << log.substr(begin, 80);
  for (auto& a : actors) {
    auto st = a->Wait(absl::Seconds(120));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << a->stderr_text();
  }
  EXPECT_TRUE(absl::StrContains(actors[1]->stderr_text(), "data continues after"))
      << actors[1]->stderr_text();

  // Exact accounting.
  SCOPED_TRACE(absl::StrCat("the learner was killed at step ", killed_at));
  ExpectEachStepAndGroupOnce(dir_, kSteps, 2);
  auto last = learner::FindLatestCheckpoint(root, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->step, kSteps);
  EXPECT_TRUE(std::filesystem::exists(last->dir + "/tokenizer.json"));

  ASSERT_TRUE(sandbox_->Signal(SIGTERM).ok());
  EXPECT_TRUE(sandbox_->Wait(absl::Seconds(60)).ok());
}

TEST_F(FaultTest, AJournalThatCannotSyncStopsTheLearnerAndLosesNothing) {
  std::unique_ptr<Subprocess> learner = StartLearner("127.0.0.1:0");
  ASSERT_NE(learner, nullptr);
  auto ready = learner->WaitForLine("ready address=", absl::Seconds(60));
  ASSERT_TRUE(ready.ok()) << ready.status();
  // After the start (which removes journals ahead of its step), before any step.
  const std::string root = dir_ + "/checkpoints";
  const std::string bad = learner::JournalPath(root, 0, 2);
  std::filesystem::create_symlink("/dev/null", bad);
  const std::string address = ready->substr(ready->find('=') + 1);
  std::unique_ptr<Subprocess> actors[2] = {StartActor(0, address),
                                           StartActor(1, address)};
  ASSERT_NE(actors[0], nullptr);
  ASSERT_NE(actors[1], nullptr);

  // The first group acknowledged after step 2's checkpoint needs a sync of that
  // journal (or the checkpoint does, for the groups it holds): the learner stops.
  auto stopped = learner->Wait(absl::Seconds(240));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) != 0)
      << learner->stderr_text();
  EXPECT_TRUE(absl::StrContains(learner->stderr_text(), "cannot sync " + bad))
      << learner->stderr_text();
  auto newest = learner::FindLatestCheckpoint(root, nullptr);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_LE(newest->step, 2);
  EXPECT_TRUE(
      absl::StrContains(learner->stderr_text(), "stopping without a checkpoint"))
      << learner->stderr_text();

  // A good disk again: the restarted learner resumes, the actors re-send what was
  // never acknowledged, and the run completes.
  std::filesystem::remove(bad);
  learner = StartLearner(address);
  ASSERT_NO_FATAL_FAILURE(ExpectTheRunToFinish(learner.get()));
  for (auto& a : actors) {
    auto st = a->Wait(absl::Seconds(120));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << a->stderr_text();
  }
  ExpectEachStepAndGroupOnce(dir_, kSteps, 2);
  auto last = learner::FindLatestCheckpoint(root, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->step, kSteps);

  ASSERT_TRUE(sandbox_->Signal(SIGTERM).ok());
  EXPECT_TRUE(sandbox_->Wait(absl::Seconds(60)).ok());
}

}  // namespace
}  // namespace nbrl
