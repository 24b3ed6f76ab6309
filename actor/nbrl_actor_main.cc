// nbrl-actor: generates trajectory groups with the current policy and streams them
// to its learner rank. Each batch runs `actor.groups_per_batch` questions x
// `actor.group_size` rollouts through the NB-Agent loop against a sandbox worker;
// new weights are swapped in between batches (with learner.sync, each batch waits
// for the weights the previous one trained).
//
// Prints "ready" once registered. Stops at actor.max_groups or on SIGINT/SIGTERM
// after the batch in progress, flushing unacknowledged groups.
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "actor/grpc_sandbox_client.h"
#include "actor/learner_client.h"
#include "actor/trajectory_proto.h"
#include "agent/dataset.h"
#include "agent/episode_runner.h"
#include "agent/model_policy.h"
#include "agent/scripted_policy.h"
#include "agent/task_family.h"
#include "common/grpc_auth.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "model/checkpoint.h"
#include "model/runtime.h"
#include "model/weight_codec.h"

namespace nbrl::actor {
namespace {

absl::Status Run(common::ProcessContext& ctx) {
  const common::Config& c = *ctx.config;
  const int rank = static_cast<int>(c.GetInt("process.rank"));
  std::string actor_id = c.GetString("actor.id");
  if (actor_id.empty()) actor_id = absl::StrCat("actor-", rank);
  for (const char* key :
       {"model.path", "actor.learner", "actor.sandbox", "actor.data"}) {
    if (c.GetString(key).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(key, " is empty"));
    }
  }
  const std::string model_path = c.GetString("model.path");
  // "scripted": the task world's expert makes the demonstrations (SFT warm starts,
  // learner.mode=sft); the model folder only provides the tokenizer.
  const bool scripted = c.GetString("actor.policy") == "scripted";
  std::unique_ptr<model::Transformer> model;
  if (!scripted) {
    if (const int threads = static_cast<int>(c.GetInt("actor.threads")); threads > 0)
      RETURN_IF_ERROR(model::SetCpuThreads(threads));
    LOG(INFO) << "actor: " << model::DescribeRuntime(model::GetRuntimeInfo());
    ASSIGN_OR_RETURN(model, model::LoadTransformer(model_path));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<model::Tokenizer> tokenizer,
                   model::Tokenizer::Load(model_path));
  ASSIGN_OR_RETURN(std::unique_ptr<model::ChatTemplate> chat,
                   model::ChatTemplate::Create(tokenizer.get()));
  ASSIGN_OR_RETURN(std::unique_ptr<agent::TaskFamily> family,
                   agent::MakeTaskFamily(c.GetString("actor.family")));

  // Data: this actor's shard, in a seeded order that changes every epoch.
  ASSIGN_OR_RETURN(std::vector<agent::Example> all,
                   agent::LoadJsonl(c.GetString("actor.data")));
  ASSIGN_OR_RETURN(std::vector<agent::Example> shard,
                   agent::Shard(all, rank % static_cast<int>(c.GetInt("actor.shards")),
                                static_cast<int>(c.GetInt("actor.shards"))));
  if (shard.empty())
    return absl::InvalidArgumentError("this actor's data shard is empty");

  const int group_size = static_cast<int>(c.GetInt("actor.group_size"));
  const int groups_per_batch = static_cast<int>(c.GetInt("actor.groups_per_batch"));
  agent::ModelPolicyOptions mpo;
  mpo.max_episodes = group_size * groups_per_batch;
  mpo.temperature = c.GetDouble("actor.temperature");
  mpo.seed = static_cast<uint64_t>(c.GetInt("run.seed")) * 1000 + rank;
  std::unique_ptr<agent::ModelPolicy> model_policy;
  std::unique_ptr<agent::ScriptedPolicy> scripted_policy;
  agent::Policy* policy = nullptr;
  if (scripted) {
    agent::ScriptedPolicyOptions so;
    so.noise = c.GetDouble("actor.noise");
    absl::StatusOr<std::vector<agent::ScriptedFault>> faults =
        agent::ParseScriptedFaults(c.GetStringList("actor.noise_faults"));
    if (!faults.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("actor.noise_faults: ", faults.status().message()));
    }
    so.faults = *std::move(faults);
    so.seed = static_cast<uint64_t>(c.GetInt("run.seed")) * 1000 + rank;
    scripted_policy = std::make_unique<agent::ScriptedPolicy>(tokenizer.get(), so);
    policy = scripted_policy.get();
  } else {
    ASSIGN_OR_RETURN(model_policy,
                     agent::ModelPolicy::Create(model.get(), tokenizer.get(), mpo));
    policy = model_policy.get();
  }
  // The weight version the episodes run with (the scripted expert has none: 0).
  uint64_t running_version = 0;

  // The same credentials for the sandbox worker and the learner.
  ASSIGN_OR_RETURN(common::ClientAuth auth,
                   common::ClientAuth::Load(common::AuthOptionsFrom(c)));
  GrpcSandboxOptions sbo;
  sbo.address = c.GetString("actor.sandbox");
  sbo.client_id = actor_id;
  sbo.auth = auth;
  ASSIGN_OR_RETURN(std::unique_ptr<GrpcSandboxClient> sandbox,
                   GrpcSandboxClient::Create(sbo));

  LearnerClientOptions lco;
  lco.address = c.GetString("actor.learner");
  lco.actor_id = actor_id;
  lco.group_size = static_cast<uint32_t>(group_size);
  lco.auth = auth;
  ASSIGN_OR_RETURN(std::unique_ptr<LearnerClient> learner,
                   LearnerClient::Create(lco, ctx.registry.get()));
  RETURN_IF_ERROR(learner->Start(0, absl::Now() + absl::Minutes(2)));

  // The shard continues where this slot's accepted groups left off (the learner
  // keeps that across restarts of either side), in a seeded order per epoch.
  const uint64_t shard_size = shard.size();
  agent::DataCursor start;
  if (std::optional<uint64_t> taken = learner->data_cursor()) {
    start.epoch = *taken / shard_size;
    start.position = *taken % shard_size;
    LOG(INFO) << "actor: data continues after " << *taken << " examples (epoch "
              << start.epoch << ", position " << start.position << ")";
  }
  agent::ExampleStream stream(
      std::move(shard), static_cast<uint64_t>(c.GetInt("run.seed")) + rank, start);
  auto examples_taken = [&] {
    return stream.cursor().epoch * shard_size + stream.cursor().position;
  };
  // Group ids must never repeat, also across restarts of this slot.
  const std::string incarnation = absl::StrCat(absl::ToUnixMicros(absl::Now()));
  const bool sync = c.GetBool("learner.sync");

  // New weights arrive on the subscription thread and are applied between batches.
  absl::Mutex mu;
  std::shared_ptr<common::WeightVersion> pending;
  learner->FollowWeights(0, [&](std::shared_ptr<common::WeightVersion> v) {
    absl::MutexLock lock(&mu);
    pending = std::move(v);
  });
  // Waits until a weight version other than `have` is pending (or shutdown).
  auto await_weights = [&](uint64_t have) {
    absl::MutexLock lock(&mu);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return pending != nullptr && pending->manifest.version() != have;
    };
    while (!mu.AwaitWithTimeout(absl::Condition(&arrived), absl::Milliseconds(200))) {
      if (ctx.shutdown->requested() || learner->shutdown_requested()) return;
    }
  };
  auto& groups_sent = common::CounterFamily(*ctx.registry, "nbrl_actor_groups_total",
                                            "Trajectory groups sent to the learner.")
                          .Add({});
  auto& version_gauge = common::GaugeFamily(*ctx.registry, "nbrl_actor_policy_version",
                                            "Weight version the actor samples with.")
                            .Add({});
  auto& reward_gauge = common::GaugeFamily(*ctx.registry, "nbrl_actor_reward_mean",
                                           "Mean reward of the last batch.")
                           .Add({});

  agent::EpisodeOptions eo;
  eo.max_steps = static_cast<int>(c.GetInt("actor.max_steps"));
  eo.family = family.get();
  eo.system_prompt = agent::SystemPrompt(family->tools(), eo.max_steps);
  eo.context.context_tokens = static_cast<int>(c.GetInt("actor.context_tokens"));
  eo.context.max_action_tokens = static_cast<int>(c.GetInt("actor.max_action_tokens"));
  eo.max_consecutive_format_errors =
      static_cast<int>(c.GetInt("actor.max_format_errors"));
  eo.cell_timeout = c.GetDuration("actor.cell_timeout");
  eo.rewards = agent::RewardOptionsFrom(c);
  agent::EpisodeRunner runner(tokenizer.get(), chat.get(), policy, sandbox.get(), eo);
  std::cout << "ready actor=" << actor_id << std::endl;
  // Sample with the learner's weights from the first episode on (after a learner
  // resume they are the checkpoint's, not model.path's).
  if (!scripted) await_weights(0);

  const int64_t max_groups = c.GetInt("actor.max_groups");
  int64_t sent = 0;
  uint64_t episode_id = 0;
  while (!ctx.shutdown->requested() && !learner->shutdown_requested() &&
         (max_groups == 0 || sent < max_groups)) {
    {
      std::shared_ptr<common::WeightVersion> v;
      {
        absl::MutexLock lock(&mu);
        v = std::move(pending);
      }
      if (v && !scripted) {
        ASSIGN_OR_RETURN(model::TensorMap tensors, model::DecodeWeights(*v));
        RETURN_IF_ERROR(model->LoadStateDict(tensors, "weight version"));
        RETURN_IF_ERROR(model_policy->ResetAll());
        model_policy->set_version(v->manifest.version());
        running_version = v->manifest.version();
        learner->set_policy_version(v->manifest.version());
        version_gauge.Set(static_cast<double>(v->manifest.version()));
        LOG(INFO) << "actor: now sampling with weight version "
                  << v->manifest.version();
      }
    }
    if (ctx.shutdown->requested()) break;
    std::vector<agent::EpisodeTask> tasks;
    std::vector<agent::Example> examples;
    std::vector<uint64_t> cursors;
    for (int g = 0; g < groups_per_batch; ++g) {
      examples.push_back(stream.Next());
      cursors.push_back(examples_taken());
      for (int r = 0; r < group_size; ++r) {
        agent::EpisodeTask t;
        t.episode_id = episode_id++;
        t.trajectory_id = absl::StrCat(actor_id, "-", incarnation, "-", t.episode_id);
        t.example = examples.back();
        t.task_text = family->TaskText(t.example);
        tasks.push_back(std::move(t));
      }
    }
    ASSIGN_OR_RETURN(std::vector<agent::TrajectoryRecord> records, runner.Run(tasks));
    double reward = 0;
    for (const auto& r : records) reward += r.total_reward;
    reward_gauge.Set(reward / static_cast<double>(records.size()));
    for (int g = 0; g < groups_per_batch; ++g) {
      std::vector<agent::TrajectoryRecord> group(
          records.begin() + g * group_size, records.begin() + (g + 1) * group_size);
      v1::TrajectoryGroup msg = MakeGroup(
          absl::StrCat(actor_id, "-", incarnation, "-g", sent), actor_id,
          c.GetString("actor.data"), examples[g].id, family->name(), group, cursors[g]);
      absl::Status st = learner->Send(std::move(msg), absl::InfiniteFuture());
      if (!st.ok() && learner->shutdown_requested()) break;  // the run is over
      RETURN_IF_ERROR(st);
      groups_sent.Increment();
      ++sent;
    }
    LOG(INFO) << "actor: sent " << sent << " groups, mean reward "
              << reward / static_cast<double>(records.size()) << ", version "
              << running_version;
    // Synchronous training: the next batch waits for the weights this one trains.
    if (sync && !scripted) await_weights(running_version);
  }
  // A finished run trains nothing more: do not wait long for acknowledgements.
  absl::Status flushed =
      learner->Flush(absl::Now() + (learner->shutdown_requested() ? absl::Seconds(2)
                                                                  : absl::Seconds(30)));
  if (!flushed.ok()) LOG(WARNING) << "actor: " << flushed;
  learner->Close();
  return absl::OkStatus();
}

}  // namespace
}  // namespace nbrl::actor

int main(int argc, char** argv) {
  nbrl::common::ProgramSpec spec;
  spec.name = "nbrl-actor";
  spec.component = "actor";
  spec.summary =
      "generates trajectory groups with the policy and streams them to a learner";
  spec.run = nbrl::actor::Run;
  return nbrl::common::RunProgram(spec, argc, argv);
}
