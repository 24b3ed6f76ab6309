// A whole small run with real processes: nbrl-sandbox, nbrl-learner and
// nbrl-actor on loopback and a unix socket. The actor generates groups with a tiny
// random model through the real sandbox, the learner trains on them and publishes
// new weights, the actor picks them up, and everything stops cleanly.
#include <signal.h>
#include <sys/wait.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

using testutil::BinaryPath;
using testutil::Subprocess;

TEST(ClusterTest, ActorsFeedTheLearnerAndFollowItsWeights) {
  const std::string dir = testutil::MakeTempDir("nbrl-cluster");
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
  EXPECT_TRUE(absl::StrContains(actor_log, "now sampling with weight version 2"))
      << actor_log;
  EXPECT_TRUE(absl::StrContains(actor_log, "actor: sent")) << actor_log;

  ASSERT_TRUE((*sandbox)->Signal(SIGTERM).ok());
  auto sandbox_status = (*sandbox)->Wait(absl::Seconds(60));
  ASSERT_TRUE(sandbox_status.ok());
  EXPECT_EQ(WEXITSTATUS(*sandbox_status), 0) << (*sandbox)->stderr_text();
}

}  // namespace
}  // namespace nbrl
