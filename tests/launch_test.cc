// `nbrl launch` with real processes: a crashed actor is restarted, counted and
// trained on again; SIGTERM stops everything in order and leaves a checkpoint, and
// the same command resumes the run from it. Two launchers on this machine act as
// two nodes (the learner on one, actors on both) and end at learner.max_steps, and
// --add-actors scales a running node up and down.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

using testutil::BinaryPath;
using testutil::Subprocess;

int StepsLogged(const std::string& run_dir) {
  return static_cast<int>(testutil::StepRecords(run_dir).size());
}

pid_t Pid(const std::string& run_dir, const std::string& name) {
  auto text = common::ReadFile(run_dir + "/logs/" + name + ".pid");
  int pid = -1;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid))
    return -1;
  return pid;
}

bool Alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// Ids of the groups the learner trained on ("actor-3-<incarnation>-g2").
std::vector<std::string> TrainedGroups(const std::string& run_dir) {
  std::vector<std::string> ids;
  for (const auto& r : testutil::StepRecords(run_dir)) {
    if (!r.contains("groups")) continue;
    for (const auto& g : r["groups"]) ids.push_back(g.get<std::string>());
  }
  return ids;
}

// Actors whose groups the learner trained on ("actor-3" from "actor-3-<inc>-g2").
std::set<std::string> TrainedActors(const std::string& run_dir) {
  std::set<std::string> actors;
  for (const std::string& id : TrainedGroups(run_dir)) {
    actors.insert(id.substr(0, id.find('-', id.find('-') + 1)));
  }
  return actors;
}

// Waits until the learner has trained on a group of each of `actors`.
bool WaitForTrained(const std::string& run_dir, const std::vector<std::string>& actors,
                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const std::set<std::string> trained = TrainedActors(run_dir);
    bool all = true;
    for (const auto& a : actors) all = all && trained.count(a) > 0;
    if (all) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(200));
  }
}

// The last lines of each process log, for a failure message.
std::string LogTails(const std::string& run_dir) {
  std::string out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir + "/logs", ec)) {
    if (entry.path().extension() != ".log") continue;
    auto text = common::ReadFile(entry.path().string());
    if (!text.ok()) continue;
    std::vector<absl::string_view> lines = absl::StrSplit(*text, '\n');
    const size_t from = lines.size() > 15 ? lines.size() - 15 : 0;
    absl::StrAppend(&out, "--- ", entry.path().filename().string(), " (last lines)\n");
    for (size_t i = from; i < lines.size(); ++i) absl::StrAppend(&out, lines[i], "\n");
  }
  return out;
}

class LaunchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    auto run = testutil::MakeTinyRun(dir_);
    ASSERT_TRUE(run.ok()) << run.status();
    run_dir_ = dir_ + "/run";
    config_ = dir_ + "/run.yaml";
    ASSERT_TRUE(common::WriteFileAtomically(
                    config_, absl::StrCat("run:\n  dir: ", run_dir_,
                                          "\nmodel:\n  path: ", run->model,
                                          "\nmetrics:\n  enabled: true\n"
                                          "sandbox:\n  tools:\n    index: ",
                                          run->index,
                                          "\nlearner:\n  batch_groups: 2\n"
                                          "  lr: 0.001\n  max_staleness: 100\n"
                                          "  checkpoint_every: 2\n"
                                          "actor:\n  data: ",
                                          run->train,
                                          "\n  group_size: 2\n  groups_per_batch: 1\n"
                                          "  max_steps: 2\n  max_action_tokens: 32\n"
                                          "  context_tokens: 2048\n"
                                          "launch:\n  actors: 2\n"))
                    .ok());
  }

  std::unique_ptr<Subprocess> Launch(const std::string& max_steps,
                                     std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {BinaryPath("cli/nbrl"), "launch", "--config",
                                     config_, "learner.max_steps=" + max_steps};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = Subprocess::Start(argv);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  testutil::TempDir tmp_{"nbrl-launch"};
  std::string dir_, run_dir_, config_;
};

// The run has no step limit (a limit could end it, with actor-0's groups alone,
// before the restarted actor-1 is up: CI saw that). It is stopped once the learner
// trained on groups of both of actor-1's incarnations.
TEST_F(LaunchTest, RestartsACrashedActor) {
  auto launch = Launch("0");  // until stopped
  ASSERT_NE(launch, nullptr);
  // Groups of actor-1's first incarnation are trained before it dies.
  ASSERT_TRUE(WaitForTrained(run_dir_, {"actor-0", "actor-1"}, absl::Seconds(180)))
      << LogTails(run_dir_);
  const pid_t victim = Pid(run_dir_, "actor-1");
  ASSERT_TRUE(Alive(victim));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  // The launcher restarts it (a new pid) and counts the restart in its metrics.
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  while ((Pid(run_dir_, "actor-1") == victim || !Alive(Pid(run_dir_, "actor-1"))) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  auto target = common::ReadFile(run_dir_ + "/prometheus/launch-0.json");
  ASSERT_TRUE(target.ok()) << target.status();
  const size_t colon = target->find("127.0.0.1:");
  ASSERT_NE(colon, std::string::npos) << *target;
  const int port = std::atoi(target->c_str() + colon + 10);
  // The gauges follow within a status tick (a second).
  absl::StatusOr<std::string> scrape;
  deadline = absl::Now() + absl::Seconds(30);
  do {
    absl::SleepFor(absl::Milliseconds(200));
    scrape = testutil::HttpGet("127.0.0.1", port, "/metrics");
    ASSERT_TRUE(scrape.ok()) << scrape.status();
  } while (!absl::StrContains(*scrape, "nbrl_launch_processes{role=\"actor\"} 2") &&
           absl::Now() < deadline);
  EXPECT_TRUE(
      absl::StrContains(*scrape, "nbrl_launch_restarts_total{process=\"actor-1\"} 1"))
      << *scrape;
  EXPECT_TRUE(absl::StrContains(*scrape, "nbrl_launch_processes{role=\"actor\"} 2"))
      << *scrape;
  EXPECT_TRUE(
      absl::StrContains(*scrape, "nbrl_launch_processes_expected{role=\"actor\"} 2"))
      << *scrape;

  // The restarted actor's groups are trained too ("actor-1-<incarnation>-g<n>").
  auto incarnations = [&] {
    std::set<std::string> seen;
    for (const std::string& id : TrainedGroups(run_dir_)) {
      if (id.rfind("actor-1-", 0) == 0) seen.insert(id.substr(0, id.rfind("-g")));
    }
    return seen.size();
  };
  deadline = absl::Now() + absl::Seconds(180);
  while (incarnations() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(incarnations(), 2u) << LogTails(run_dir_);
  absl::SleepFor(absl::Seconds(2));  // a status tick prints that step's line

  ASSERT_TRUE(launch->Signal(SIGTERM).ok());
  auto status = launch->Wait(absl::Seconds(300));
  ASSERT_TRUE(status.ok()) << status.status();
  const std::string& err = launch->stderr_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << err;
  EXPECT_TRUE(
      absl::StrContains(err, "actor-1 killed by SIGKILL; restarting in 1s (restart 1)"))
      << err;
  EXPECT_TRUE(absl::StrContains(err, "restarts 1")) << err;  // the status line
  const pid_t restarted = Pid(run_dir_, "actor-1");
  EXPECT_NE(restarted, victim);
  for (const char* name : {"sandbox-0", "learner-0", "actor-0", "actor-1"}) {
    EXPECT_FALSE(Alive(Pid(run_dir_, name))) << name << " outlived the launcher";
  }
}

TEST_F(LaunchTest, SigtermLeavesACheckpointAndTheSameCommandResumes) {
  auto launch = Launch("0");  // until stopped
  ASSERT_NE(launch, nullptr);
  ASSERT_TRUE(testutil::WaitForSteps(run_dir_, 3, absl::Seconds(180)));
  ASSERT_TRUE(launch->Signal(SIGTERM).ok());
  auto status = launch->Wait(absl::Seconds(200));
  ASSERT_TRUE(status.ok()) << status.status();
  std::string err = launch->stderr_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << err;
  EXPECT_TRUE(absl::StrContains(err, "Resume with: nbrl launch --config")) << err;
  for (const char* name : {"sandbox-0", "learner-0", "actor-0", "actor-1"}) {
    EXPECT_FALSE(Alive(Pid(run_dir_, name))) << name << " outlived the launcher";
  }
  const int stopped_at = StepsLogged(run_dir_);
  ASSERT_GE(stopped_at, 3);
  EXPECT_TRUE(std::filesystem::exists(absl::StrCat(
      run_dir_, "/checkpoints/step-0000000", stopped_at, "/manifest.json")))
      << "no checkpoint at the step the run stopped at (" << stopped_at << ")";

  auto again = Launch(std::to_string(stopped_at + 2));
  ASSERT_NE(again, nullptr);
  status = again->Wait(absl::Seconds(300));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << again->stderr_text();
  EXPECT_EQ(StepsLogged(run_dir_), stopped_at + 2);
  auto learner_log = common::ReadFile(run_dir_ + "/logs/learner-0.log");
  ASSERT_TRUE(learner_log.ok());
  EXPECT_TRUE(
      absl::StrContains(*learner_log, absl::StrCat("at step ", stopped_at, "; ")))
      << *learner_log;
}

TEST_F(LaunchTest, TwoNodesShareALearnerAndAddActorsScalesANode) {
  const int learner_port = testutil::FreePort(), store_port = testutil::FreePort();
  ASSERT_GT(learner_port, 0);
  const std::vector<std::string> cluster = {
      "launch.nodes=2", "launch.actors=1",
      absl::StrCat("launch.learner_port=", learner_port),
      absl::StrCat("learner.store_address=127.0.0.1:", store_port),
      // Fresh data only, so the added actor's groups do not queue behind a
      // backlog of the first actors' (the tiny model generates faster than the
      // learner trains).
      "learner.max_staleness=1"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), cluster.begin(), cluster.end());
    return more;
  };
  // Enough steps that a slow machine still scales up and down inside the run.
  const int kSteps = 32;
  auto node0 = Launch(std::to_string(kSteps), with({"launch.node=0"}));
  ASSERT_NE(node0, nullptr);
  auto node1 = Launch(std::to_string(kSteps),
                      with({"launch.node=1", "launch.roles=[sandbox,actor]"}));
  ASSERT_NE(node1, nullptr);
  ASSERT_TRUE(testutil::WaitForSteps(run_dir_, 2, absl::Seconds(180)))
      << node0->stderr_text() << node1->stderr_text();
  // Both first actors reach the learner before the scale-up. Which fresh groups
  // survive max_staleness=1 is a race, so one actor can miss the first steps.
  ASSERT_TRUE(WaitForTrained(run_dir_, {"actor-0", "actor-1"}, absl::Seconds(120)))
      << LogTails(run_dir_);
  ASSERT_LT(StepsLogged(run_dir_), kSteps - 6)
      << "too few steps left for the scale-up; raise kSteps";

  // Node 1 gets a second actor: global index 3 (past the 2 first actors, node 1).
  auto scale = [&](const std::string& n) {
    return testutil::RunCommand(
        {BinaryPath("cli/nbrl"), "launch", "--config", config_, "launch.nodes=2",
         "launch.node=1", "launch.actors=1", "--add-actors", n},
        absl::Seconds(120));
  };
  auto up = scale("1");
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->exit_code, 0) << up->err;
  EXPECT_TRUE(absl::StrContains(up->out, "node 1 actors 1 -> 2")) << up->out << up->err;
  EXPECT_TRUE(WaitForTrained(run_dir_, {"actor-3"}, absl::Seconds(180)))
      << "actor-3 never reached the learner\n"
      << LogTails(run_dir_);
  auto too_many = scale("-5");
  ASSERT_TRUE(too_many.ok());
  EXPECT_NE(too_many->exit_code, 0);
  EXPECT_TRUE(absl::StrContains(too_many->err, "cannot remove 5 actors"))
      << too_many->err;

  auto down = scale("-1");
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->exit_code, 0) << down->err;
  EXPECT_FALSE(Alive(Pid(run_dir_, "actor-3")));
  // The learner ends the run; node 1 ends when its actors are told so.
  for (auto* node : {node0.get(), node1.get()}) {
    auto status = node->Wait(absl::Seconds(400));
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << node->stderr_text();
  }
  EXPECT_TRUE(absl::StrContains(node1->stderr_text(), "run finished (the learner"))
      << node1->stderr_text();
  EXPECT_TRUE(absl::StrContains(node0->stderr_text(), "nbrl launch: run finished: "))
      << node0->stderr_text();
  EXPECT_EQ(StepsLogged(run_dir_), kSteps);
  EXPECT_TRUE(std::filesystem::exists(
      absl::StrFormat("%s/checkpoints/step-%08d/manifest.json", run_dir_, kSteps)));
  // Without a launcher, --add-actors says so.
  auto orphan = scale("1");
  ASSERT_TRUE(orphan.ok());
  EXPECT_NE(orphan->exit_code, 0);
  EXPECT_TRUE(absl::StrContains(orphan->err, "no launcher is running")) << orphan->err;
}

}  // namespace
}  // namespace nbrl
