// A whole small run with real processes: nbrl-sandbox, nbrl-learner and
// nbrl-actor on loopback and a unix socket. The actor generates groups with a tiny
// random model through the real sandbox, the learner trains on them and publishes
// new weights, the actor picks them up, and everything stops cleanly.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

using testutil::BinaryPath;
using testutil::Subprocess;

// The newest N in the actor's "now sampling with weight version N" lines; 0 if none.
int NewestSampledVersion(absl::string_view log) {
  constexpr absl::string_view kMarker = "now sampling with weight version ";
  int newest = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find(kMarker);
    if (at == absl::string_view::npos) continue;
    int v = 0;
    if (absl::SimpleAtoi(line.substr(at + kMarker.size()), &v)) {
      newest = std::max(newest, v);
    }
  }
  return newest;
}

TEST(ClusterTest, ActorsFeedTheLearnerAndFollowItsWeights) {
  testutil::TempDir tmp("nbrl-cluster");
  const std::string& dir = tmp.path();
  auto run = testutil::MakeTinyRun(dir);
  ASSERT_TRUE(run.ok()) << run.status();
  const std::string ckpt = run->model;

  const std::string sock = "unix:" + dir + "/sandbox.sock";
  auto sandbox = Subprocess::Start(
      {BinaryPath("sandbox_worker/nbrl-sandbox"), "serve", "sandbox.address=" + sock,
       "sandbox.tools.index=" + run->index, "run.dir=" + dir, "log.level=warning"});
  ASSERT_TRUE(sandbox.ok());
  ASSERT_TRUE((*sandbox)->WaitForLine("ready", absl::Seconds(60)).ok());

  auto learner = Subprocess::Start({BinaryPath("learner/nbrl-learner"),
                                    "model.path=" + ckpt, "run.dir=" + dir,
                                    "learner.batch_groups=2", "learner.max_steps=3",
                                    "learner.lr=1e-3", "learner.max_staleness=8"});
  ASSERT_TRUE(learner.ok());
  auto ready = (*learner)->WaitForLine("ready address=", absl::Seconds(60));
  ASSERT_TRUE(ready.ok()) << ready.status();
  const std::string address = ready->substr(ready->find('=') + 1);

  auto actor = Subprocess::Start(
      {BinaryPath("actor/nbrl-actor"), "model.path=" + ckpt, "run.dir=" + dir,
       "actor.learner=" + address, "actor.sandbox=" + sock, "actor.data=" + run->train,
       "actor.group_size=2", "actor.groups_per_batch=2", "actor.max_steps=2",
       "actor.max_action_tokens=48", "actor.context_tokens=2048",
       "process.shutdown_grace=60s", "metrics.enabled=false"});
  ASSERT_TRUE(actor.ok());
  ASSERT_TRUE((*actor)->WaitForLine("ready", absl::Seconds(60)).ok());

  // The learner stops by itself after three optimizer steps.
  auto learner_status = (*learner)->Wait(absl::Seconds(300));
  ASSERT_TRUE(learner_status.ok()) << learner_status.status();
  EXPECT_TRUE(WIFEXITED(*learner_status) && WEXITSTATUS(*learner_status) == 0)
      << (*learner)->stderr_text();
  const std::string& learner_log = (*learner)->stderr_text();
  EXPECT_TRUE(absl::StrContains(learner_log, "step 3 loss")) << learner_log;
  EXPECT_TRUE(absl::StrContains(learner_log, "actor registered: actor-0"))
      << learner_log;

  ASSERT_TRUE((*actor)->Signal(SIGTERM).ok());
  auto actor_status = (*actor)->Wait(absl::Seconds(120));
  ASSERT_TRUE(actor_status.ok()) << actor_status.status();
  EXPECT_TRUE(WIFEXITED(*actor_status) && WEXITSTATUS(*actor_status) == 0)
      << "wait status " << *actor_status << "\n"
      << (*actor)->stderr_text();
  const std::string& actor_log = (*actor)->stderr_text();
  // The actor moved past the initial weights. Not necessarily through version 2: a
  // subscriber that falls behind skips to the newest version, by design.
  EXPECT_GE(NewestSampledVersion(actor_log), 2) << actor_log;
  EXPECT_TRUE(absl::StrContains(actor_log, "actor: sent")) << actor_log;

  ASSERT_TRUE((*sandbox)->Signal(SIGTERM).ok());
  auto sandbox_status = (*sandbox)->Wait(absl::Seconds(60));
  ASSERT_TRUE(sandbox_status.ok());
  EXPECT_EQ(WEXITSTATUS(*sandbox_status), 0) << (*sandbox)->stderr_text();
}

// The warm-start path: the scripted expert's demonstrations, from actors through
// the same stream, train the model with SFT, and the result is a checkpoint.
TEST(ClusterTest, ScriptedActorsFeedAnSftWarmStart) {
  testutil::TempDir tmp("nbrl-sft");
  const std::string& dir = tmp.path();
  auto run = testutil::MakeTinyRun(dir);
  ASSERT_TRUE(run.ok()) << run.status();
  const std::string sock = "unix:" + dir + "/sandbox.sock";
  auto sandbox = Subprocess::Start(
      {BinaryPath("sandbox_worker/nbrl-sandbox"), "serve", "sandbox.address=" + sock,
       "sandbox.tools.index=" + run->index, "run.dir=" + dir, "log.level=warning",
       "metrics.enabled=false"});
  ASSERT_TRUE(sandbox.ok());
  ASSERT_TRUE((*sandbox)->WaitForLine("ready", absl::Seconds(60)).ok());
  auto learner = Subprocess::Start(
      {BinaryPath("learner/nbrl-learner"), "model.path=" + run->model, "run.dir=" + dir,
       "learner.mode=sft", "learner.batch_groups=2", "learner.max_steps=3",
       "learner.lr=1e-2", "metrics.enabled=false"});
  ASSERT_TRUE(learner.ok());
  auto ready = (*learner)->WaitForLine("ready address=", absl::Seconds(60));
  ASSERT_TRUE(ready.ok()) << ready.status();
  auto actor = Subprocess::Start(
      {BinaryPath("actor/nbrl-actor"), "model.path=" + run->model, "run.dir=" + dir,
       "actor.learner=" + ready->substr(ready->find('=') + 1), "actor.sandbox=" + sock,
       "actor.data=" + run->train, "actor.policy=scripted", "actor.group_size=2",
       "actor.groups_per_batch=2", "metrics.enabled=false"});
  ASSERT_TRUE(actor.ok());

  auto status = (*learner)->Wait(absl::Seconds(300));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << (*learner)->stderr_text();
  auto actor_status = (*actor)->Wait(absl::Seconds(120));
  ASSERT_TRUE(actor_status.ok()) << actor_status.status();
  EXPECT_TRUE(WIFEXITED(*actor_status) && WEXITSTATUS(*actor_status) == 0)
      << (*actor)->stderr_text();

  // Three steps, trained on demonstrations that mostly solve their questions.
  auto steps = common::ReadFile(dir + "/steps/rank-0.jsonl");
  ASSERT_TRUE(steps.ok()) << steps.status();
  std::vector<std::string> lines = absl::StrSplit(*steps, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << *steps;
  EXPECT_TRUE(absl::StrContains(lines[0], "\"reward_mean\":")) << lines[0];
  EXPECT_FALSE(absl::StrContains(lines[0], "\"reward_mean\":0,")) << lines[0];
  // The scripted expert mostly answers right: the step log's EM says so.
  double em = 0;
  for (const auto& r : testutil::StepRecords(dir)) em += r.value("em_mean", 0.0);
  EXPECT_GT(em, 0.5) << *steps;
  // The checkpoint is a model folder that differs from where it started.
  auto before = model::LoadTransformer(run->model);
  auto after = model::LoadTransformer(dir + "/checkpoints/step-00000003");
  ASSERT_TRUE(before.ok() && after.ok()) << after.status();
  auto a = (*before)->StateDict(), b = (*after)->StateDict();
  EXPECT_FALSE(torch::equal(a.at("lm_head.weight"), b.at("lm_head.weight")));

  ASSERT_TRUE((*sandbox)->Signal(SIGTERM).ok());
  EXPECT_TRUE((*sandbox)->Wait(absl::Seconds(60)).ok());
}

}  // namespace
}  // namespace nbrl
