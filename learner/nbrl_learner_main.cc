// nbrl-learner: one learner rank. Serves LearnerService (actors push trajectory
// groups, follow weights), takes `learner.batch_groups` groups per optimizer step,
// and publishes each new version of the weights to its actors.
//
// Durability: every accepted group is journaled before it is acknowledged, a
// checkpoint is written every learner.checkpoint_every steps and when the run ends,
// and a restarted learner continues from the newest valid checkpoint, replaying the
// journal (learner.resume=auto). See learner/checkpoint.h.
//
// Prints "ready address=HOST:PORT" once serving. Stops at learner.max_steps or on
// SIGINT/SIGTERM after the step in progress, leaving a checkpoint.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/grpc_auth.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "learner/checkpoint.h"
#include "learner/group_journal.h"
#include "learner/group_validator.h"
#include "learner/learner_service.h"
#include "learner/trainer.h"
#include "model/checkpoint.h"
#include "model/runtime.h"
#include "model/safetensors.h"
#include "model/weight_codec.h"

namespace nbrl::learner {
namespace {

TrainerOptions TrainerOptionsFrom(const common::Config& c) {
  TrainerOptions o;
  o.mode = c.GetString("learner.mode");
  o.advantages.estimator = c.GetString("learner.advantage");
  o.advantages.gamma = c.GetDouble("learner.gamma");
  o.advantages.grpo_scale = c.GetBool("learner.grpo_std");
  o.advantages.negative_scale = c.GetDouble("learner.negative_advantage_scale");
  o.loss.clip_low = c.GetDouble("learner.clip_low");
  o.loss.clip_high = c.GetDouble("learner.clip_high");
  o.loss.dual_clip = c.GetDouble("learner.dual_clip");
  o.loss.aggregation = c.GetString("learner.aggregation");
  o.loss.kl_coef = c.GetDouble("learner.kl_coef");
  o.loss.entropy_coef = c.GetDouble("learner.entropy_coef");
  o.lr = c.GetDouble("learner.lr");
  o.weight_decay = c.GetDouble("learner.weight_decay");
  o.warmup_steps = c.GetInt("learner.warmup_steps");
  o.max_grad_norm = c.GetDouble("learner.max_grad_norm");
  o.microbatch_tokens = c.GetInt("learner.microbatch_tokens");
  o.schedule = c.GetString("learner.schedule");
  o.total_steps = c.GetInt("learner.max_steps");
  // The actors sample at actor.temperature; RL scores the same distribution.
  const double t = c.GetDouble("actor.temperature");
  o.temperature = t > 0 ? t : 1.0;
  return o;
}

// Step metrics exported per optimizer step.
struct StepMetrics {
  explicit StepMetrics(prometheus::Registry& r)
      : steps(common::CounterFamily(r, "nbrl_learner_steps_total", "Optimizer steps.")
                  .Add({})),
        step(common::GaugeFamily(r, "nbrl_learner_step",
                                 "Optimizer steps taken (continues across resumes).")
                 .Add({})),
        loss(common::GaugeFamily(r, "nbrl_learner_loss", "Loss of the last step.")
                 .Add({})),
        pg_loss(common::GaugeFamily(r, "nbrl_learner_pg_loss",
                                    "Policy-gradient part of the last step's loss.")
                    .Add({})),
        kl(common::GaugeFamily(r, "nbrl_learner_kl",
                               "Mean k3 KL to the reference model (last step).")
               .Add({})),
        entropy(common::GaugeFamily(r, "nbrl_learner_entropy",
                                    "Mean token entropy of the policy (last step).")
                    .Add({})),
        grad_norm(common::GaugeFamily(r, "nbrl_learner_grad_norm",
                                      "Global gradient norm before clipping.")
                      .Add({})),
        lr(common::GaugeFamily(r, "nbrl_learner_learning_rate",
                               "Learning rate of the last step.")
               .Add({})),
        reward(common::GaugeFamily(r, "nbrl_learner_reward_mean",
                                   "Mean total reward of the last step's trajectories.")
                   .Add({})),
        em(common::GaugeFamily(r, "nbrl_learner_em_mean",
                               "Exact-match rate of the last step's final answers.")
               .Add({})),
        advantage_mean(common::GaugeFamily(r, "nbrl_learner_advantage_mean",
                                           "Mean action advantage (last step).")
                           .Add({})),
        advantage_std(common::GaugeFamily(r, "nbrl_learner_advantage_std",
                                          "Standard deviation of action advantages.")
                          .Add({})),
        clip(common::GaugeFamily(r, "nbrl_learner_clip_fraction_ratio",
                                 "Fraction of tokens clipped in the last step.")
                 .Add({})),
        tokens(common::CounterFamily(r, "nbrl_learner_tokens_total",
                                     "Action tokens trained on.")
                   .Add({})),
        trained_groups(common::CounterFamily(r, "nbrl_learner_trained_groups_total",
                                             "Trajectory groups trained on.")
                           .Add({})),
        step_seconds(common::HistogramFamily(r, "nbrl_learner_step_seconds",
                                             "Time of the parts of a step.")),
        version(common::GaugeFamily(r, "nbrl_learner_policy_version",
                                    "Newest published weight version.")
                    .Add({})),
        published_bytes(common::CounterFamily(r, "nbrl_learner_published_bytes_total",
                                              "Bytes of weight versions published.")
                            .Add({})),
        checkpoint_seconds(
            common::HistogramFamily(r, "nbrl_learner_checkpoint_seconds",
                                    "Time to write and commit a checkpoint.")
                .Add({}, common::LatencyBucketsSeconds())),
        checkpoint_step(common::GaugeFamily(r, "nbrl_learner_checkpoint_step",
                                            "Step of the newest checkpoint.")
                            .Add({})),
        replayed(common::CounterFamily(
                     r, "nbrl_learner_replayed_groups_total",
                     "Journaled groups queued again when the learner resumed.")
                     .Add({})) {}
  prometheus::Counter& steps;
  prometheus::Gauge& step;
  prometheus::Gauge& loss;
  prometheus::Gauge& pg_loss;
  prometheus::Gauge& kl;
  prometheus::Gauge& entropy;
  prometheus::Gauge& grad_norm;
  prometheus::Gauge& lr;
  prometheus::Gauge& reward;
  prometheus::Gauge& em;
  prometheus::Gauge& advantage_mean;
  prometheus::Gauge& advantage_std;
  prometheus::Gauge& clip;
  prometheus::Counter& tokens;
  prometheus::Counter& trained_groups;
  prometheus::Family<prometheus::Histogram>& step_seconds;
  prometheus::Gauge& version;
  prometheus::Counter& published_bytes;
  prometheus::Histogram& checkpoint_seconds;
  prometheus::Gauge& checkpoint_step;
  prometheus::Counter& replayed;

  void Phase(const std::string& phase, double seconds) {
    step_seconds.Add({{"phase", phase}}, common::LatencyBucketsSeconds())
        .Observe(seconds);
  }
};

// <run.dir>/steps/rank-<r>.jsonl: one line per optimizer step (the record plots and
// the exactly-once checks read). On resume, the lines of steps the checkpoint does
// not hold are dropped, since those steps are taken again.
class StepLog {
 public:
  static absl::StatusOr<StepLog> Open(const std::string& run_dir, int rank,
                                      int64_t keep_through_step) {
    StepLog log;
    log.path_ = absl::StrCat(run_dir, "/steps/rank-", rank, ".jsonl");
    std::string kept;
    absl::StatusOr<std::string> old = common::ReadFile(log.path_);
    if (old.ok()) {
      size_t at = 0;
      while (at < old->size()) {
        size_t end = old->find('\n', at);
        if (end == std::string::npos) break;  // a torn last line
        std::string line = old->substr(at, end - at);
        at = end + 1;
        nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.value("step", int64_t{-1}) <= keep_through_step &&
            j.value("step", int64_t{-1}) >= 1) {
          kept += line + "\n";
        }
      }
    }
    RETURN_IF_ERROR(common::WriteFileAtomically(log.path_, kept));
    log.out_ = std::fopen(log.path_.c_str(), "a");
    if (log.out_ == nullptr) {
      return common::ErrnoToStatus(errno, absl::StrCat("cannot open ", log.path_));
    }
    return log;
  }
  StepLog() = default;
  StepLog(StepLog&& o) noexcept : path_(std::move(o.path_)), out_(o.out_) {
    o.out_ = nullptr;
  }
  ~StepLog() {
    if (out_) std::fclose(out_);
  }
  void Write(const nlohmann::json& j) {
    std::string line = j.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fflush(out_);
  }

 private:
  std::string path_;
  std::FILE* out_ = nullptr;
};

absl::Status Run(common::ProcessContext& ctx) {
  const common::Config& c = *ctx.config;
  const int rank = static_cast<int>(c.GetInt("process.rank"));
  const std::string model_path = c.GetString("model.path");
  if (model_path.empty()) {
    return absl::InvalidArgumentError("model.path is empty: give a checkpoint folder");
  }
  std::string root = c.GetString("learner.checkpoint_dir");
  if (root.empty()) root = ctx.run_dir + "/checkpoints";
  RETURN_IF_ERROR(common::MakeDirectories(root));
  ASSIGN_OR_RETURN(
      std::unique_ptr<CheckpointLock> lock,
      CheckpointLock::Acquire(root, static_cast<int>(c.GetInt("process.rank"))));
  const int world_size = static_cast<int>(c.GetInt("learner.world_size"));
  const bool journal_sync = c.GetBool("learner.journal_sync");

  // The newest valid checkpoint, when resuming.
  std::optional<CheckpointInfo> resume;
  if (c.GetString("learner.resume") == "auto") {
    std::vector<std::string> skipped;
    absl::StatusOr<CheckpointInfo> found = FindLatestCheckpoint(root, &skipped);
    for (const std::string& s : skipped) {
      LOG(WARNING) << "learner: skipping a checkpoint that fails verification: " << s;
    }
    if (found.ok()) {
      if (found->world_size != world_size) {
        return absl::FailedPreconditionError(absl::StrCat(
            found->dir, " was written by ", found->world_size,
            " learner ranks; this run has learner.world_size=", world_size,
            ". Resume with the same world size, or set learner.resume=never."));
      }
      resume = *found;
    } else if (!skipped.empty()) {
      LOG(WARNING) << "learner: no valid checkpoint under " << root
                   << "; starting from " << model_path;
    }
  } else {
    std::error_code ec;
    std::filesystem::remove_all(absl::StrCat(root, "/journal/rank-", rank), ec);
  }
  const int64_t start_step = resume ? resume->step : 0;

  if (const int threads = static_cast<int>(c.GetInt("learner.threads")); threads > 0)
    RETURN_IF_ERROR(model::SetCpuThreads(threads));
  LOG(INFO) << "learner: " << model::DescribeRuntime(model::GetRuntimeInfo());
  ASSIGN_OR_RETURN(std::unique_ptr<model::Transformer> policy,
                   model::LoadTransformer(model_path));
  if (resume) {
    ASSIGN_OR_RETURN(model::TensorMap weights, model::ReadSafetensorsDir(resume->dir));
    RETURN_IF_ERROR(policy->LoadStateDict(weights, resume->dir));
  }
  std::unique_ptr<model::Transformer> reference;
  if (c.GetDouble("learner.kl_coef") > 0 && c.GetString("learner.mode") == "rl") {
    std::string ref_path = c.GetString("learner.reference");
    if (ref_path.empty()) ref_path = model_path;
    ASSIGN_OR_RETURN(reference, model::LoadTransformer(ref_path));
    if (reference->config().vocab_size != policy->config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "learner.reference ", ref_path, " has a vocabulary of ",
          reference->config().vocab_size, " tokens; the policy has ",
          policy->config().vocab_size, ". The KL term needs the same tokenizer."));
    }
    for (auto& p : reference->parameters()) p.set_requires_grad(false);
    LOG(INFO) << "learner: KL to the frozen reference " << ref_path << " (coef "
              << c.GetDouble("learner.kl_coef") << ")";
  }

  DataParallelOptions dpo;
  dpo.rank = rank;
  dpo.world_size = world_size;
  const std::string store = c.GetString("learner.store_address");
  dpo.store_host = store.substr(0, store.rfind(':'));
  dpo.store_port = std::atoi(store.substr(store.rfind(':') + 1).c_str());
  ASSIGN_OR_RETURN(std::unique_ptr<DataParallel> dp, DataParallel::Create(dpo));
  ASSIGN_OR_RETURN(
      std::unique_ptr<Trainer> trainer,
      Trainer::Create(policy.get(), reference.get(), dp.get(), TrainerOptionsFrom(c)));
  if (c.GetString("learner.mode") == "rl") {
    if (c.GetDouble("actor.temperature") > 0) {
      LOG(INFO) << "learner: scoring at the actors' temperature "
                << c.GetDouble("actor.temperature");
    } else {
      LOG(WARNING) << "learner: actor.temperature=0 (greedy) gives no policy gradient "
                      "signal worth the name; the learner scores at temperature 1";
    }
  }

  IngestorOptions io;
  io.capacity = static_cast<size_t>(c.GetInt("learner.queue_groups"));
  // Demonstrations (sft) do not come from the policy: no staleness, no thinning.
  const bool sft = c.GetString("learner.mode") == "sft";
  io.max_staleness = sft ? std::numeric_limits<uint64_t>::max()
                     : c.GetBool("learner.sync")
                         ? 0
                         : static_cast<uint64_t>(c.GetInt("learner.max_staleness"));
  io.uniform_group_keep = sft ? 1.0 : c.GetDouble("learner.uniform_group_keep");
  io.limits.vocab_size = policy->config().vocab_size;
  // An episode has at most actor.max_steps actions, each seeing at most
  // actor.context_tokens: a bound on what a real actor sends (the trainer's memory
  // grows with the square of a row's length, so an unbounded one could exhaust it).
  io.limits.max_steps = static_cast<uint32_t>(c.GetInt("actor.max_steps"));
  io.limits.max_tokens = static_cast<uint32_t>(std::min<int64_t>(
      int64_t{1} << 24,
      c.GetInt("actor.context_tokens") * (c.GetInt("actor.max_steps") + 1)));
  io.seed = static_cast<uint64_t>(c.GetInt("run.seed"));
  Ingestor ingestor(io, ctx.registry.get());
  StepMetrics metrics(*ctx.registry);

  // Resume the optimizer and the ingestion state; replay the journal into a new
  // one, then drop the journals of the abandoned future.
  {
    RankState state;
    if (resume) {
      RETURN_IF_ERROR(LoadOptimizerState(*resume, trainer->optimizer()));
      trainer->set_step(resume->step);
      ASSIGN_OR_RETURN(state, ReadRankState(*resume, rank));
    }
    std::vector<std::string> journals = JournalsFrom(root, rank, start_step);
    std::vector<v1::TrajectoryGroup> replay;
    for (const std::string& path : journals) {
      ASSIGN_OR_RETURN(GroupJournal::Contents contents, GroupJournal::Read(path));
      if (contents.torn_tail) {
        LOG(WARNING) << "learner: " << path
                     << " ends in a torn record (a crash mid-write); it was never "
                        "acknowledged and is ignored";
      }
      for (auto& g : contents.groups) replay.push_back(std::move(g));
    }
    const std::string journal_path = JournalPath(root, rank, start_step);
    ASSIGN_OR_RETURN(std::unique_ptr<GroupJournal> journal,
                     GroupJournal::Create(journal_path + ".tmp", journal_sync));
    GroupJournal* j = journal.get();
    ingestor.SetJournal(std::move(journal));
    ASSIGN_OR_RETURN(size_t queued, ingestor.Restore(state, std::move(replay)));
    RETURN_IF_ERROR(j->Rename(journal_path));
    for (const std::string& path : journals) {
      if (path != journal_path) std::filesystem::remove(path);
    }
    metrics.replayed.Increment(static_cast<double>(queued));
    if (resume) {
      LOG(INFO) << "learner: resumed from " << resume->dir << " at step "
                << resume->step << "; " << queued
                << " acknowledged groups from the journal queued again";
    } else if (queued > 0) {
      LOG(INFO) << "learner: no checkpoint; " << queued
                << " acknowledged groups from the journal queued again";
    }
  }
  ASSIGN_OR_RETURN(StepLog step_log, StepLog::Open(ctx.run_dir, rank, start_step));

  WeightPublisherOptions wpo;
  wpo.chunk_bytes = static_cast<size_t>(c.GetInt("learner.chunk_bytes"));
  WeightPublisher publisher(wpo, ctx.registry.get());
  ASSIGN_OR_RETURN(std::unique_ptr<common::ServerAuth> auth,
                   common::ServerAuth::Create(common::AuthOptionsFrom(c),
                                              c.GetString("learner.address"), "learner",
                                              ctx.registry.get()));
  LearnerServiceOptions so;
  so.auth = auth.get();
  so.run_id = ctx.run_dir;
  so.rank = static_cast<uint32_t>(rank);
  so.world_size = static_cast<uint32_t>(world_size);
  LearnerServiceImpl service(so, &ingestor, &publisher, ctx.registry.get());

  // Versions only grow, also across resumes: actors that outlived the learner hold
  // versions it published after its checkpoint.
  uint64_t version =
      std::max<uint64_t>(resume ? resume->version : 0, ReadPublishedVersion(root)) + 1;
  auto publish = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        common::WeightVersion w,
        model::EncodeWeights(policy->StateDict(), version,
                             static_cast<uint64_t>(trainer->step()), wpo.chunk_bytes));
    if (rank == 0) RETURN_IF_ERROR(WritePublishedVersion(root, version));
    metrics.published_bytes.Increment(static_cast<double>(w.bytes.size()));
    publisher.Publish(std::make_shared<common::WeightVersion>(std::move(w)));
    metrics.version.Set(static_cast<double>(version));
    return absl::OkStatus();
  };
  // Every rank publishes to its own actors (the weights are equal on all ranks).
  RETURN_IF_ERROR(publish());

  int64_t checkpointed = start_step;
  auto checkpoint = [&]() -> absl::Status {
    const int64_t step = trainer->step();
    absl::Time t = absl::Now();
    ASSIGN_OR_RETURN(std::unique_ptr<GroupJournal> next,
                     GroupJournal::Create(JournalPath(root, rank, step), journal_sync));
    ASSIGN_OR_RETURN(RankState state, ingestor.Checkpoint(std::move(next)));
    RETURN_IF_ERROR(WriteRankState(root, step, rank, state));
    if (rank == 0) {
      RETURN_IF_ERROR(WriteModelState(root, step, *policy, trainer->optimizer(),
                                      model_path, c.ToYaml()));
    }
    if (world_size > 1) {  // every rank's part is written
      RETURN_IF_ERROR(dp->AllReduceSum({torch::zeros({1})}));
    }
    if (rank == 0) {
      RETURN_IF_ERROR(
          CommitCheckpoint(root, step, version, world_size,
                           static_cast<int>(c.GetInt("learner.keep_checkpoints"))));
    }
    checkpointed = step;
    metrics.checkpoint_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - t));
    metrics.checkpoint_step.Set(static_cast<double>(step));
    LOG(INFO) << "learner: checkpoint " << CheckpointDir(root, step) << " ("
              << absl::ToDoubleSeconds(absl::Now() - t) << " s)";
    return absl::OkStatus();
  };

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(c.GetString("learner.address"), auth->Credentials(), &port);
  service.AddTo(&builder);  // registers it; caps messages at max_message_bytes
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", c.GetString("learner.address"),
        auth->tls() ? " with TLS (are auth.tls_cert and auth.tls_key a matching "
                      "PEM certificate and key?)"
                    : ""));
  }
  const std::string host = c.GetString("learner.address")
                               .substr(0, c.GetString("learner.address").rfind(':'));
  // After a restart the actors are reconnecting: if the run ends before one of
  // them registers again, the end waits for it (WaitUntilActorsTold). From now,
  // when this learner can be reached.
  service.ExpectActors(ingestor.ActorsWithCursors());
  ctx.shutdown->OnShutdown([&] { ingestor.Close(); });
  std::cout << "ready address=" << host << ":" << port << std::endl;
  LOG(INFO) << "learner: rank " << rank << " serving on " << host << ":" << port << " ("
            << auth->Describe() << "), model " << model_path << " ("
            << model::ParameterCount(policy->config()) << " parameters), step "
            << trainer->step() << ", weight version " << version;

  metrics.step.Set(static_cast<double>(trainer->step()));
  const size_t batch = static_cast<size_t>(c.GetInt("learner.batch_groups"));
  const int64_t max_steps = c.GetInt("learner.max_steps");
  const int64_t every = c.GetInt("learner.checkpoint_every");
  absl::Status failed;
  while (!ctx.shutdown->requested() &&
         (max_steps == 0 || trainer->step() < max_steps)) {
    // Waits for a full batch; shutdown closes the ingestor and wakes this. A step
    // cut short by shutdown does not happen: its groups go back to the queue and
    // the final checkpoint's journal keeps them.
    absl::Time t0 = absl::Now();
    std::vector<v1::TrajectoryGroup> groups =
        ingestor.Take(batch, batch, absl::InfiniteFuture(), version);
    if (absl::Status st = ingestor.failure(); !st.ok()) {
      failed = st;  // the journal failed: no more steps, no checkpoint
      break;
    }
    if (ctx.shutdown->requested() || groups.size() < batch) {
      ingestor.PutBack(std::move(groups));
      break;
    }
    const double wait_s = absl::ToDoubleSeconds(absl::Now() - t0);
    absl::StatusOr<StepStats> stepped = trainer->Step(groups);
    if (!stepped.ok()) {
      failed = stepped.status();
      break;
    }
    const StepStats& s = *stepped;
    // Staleness as trained: policy versions between the weights that generated a
    // group (its oldest step) and the weights this step updated.
    double staleness_sum = 0;
    uint64_t staleness_max = 0;
    for (const auto& g : groups) {
      const uint64_t oldest = OldestPolicyVersion(g);
      const uint64_t lag = version > oldest ? version - oldest : 0;
      staleness_sum += static_cast<double>(lag);
      staleness_max = std::max(staleness_max, lag);
    }
    ++version;
    absl::Time t_publish = absl::Now();
    if (absl::Status st = publish(); !st.ok()) {
      failed = st;
      break;
    }
    const double publish_s = absl::ToDoubleSeconds(absl::Now() - t_publish);
    metrics.Phase("publish", publish_s);
    metrics.Phase("wait", wait_s);
    metrics.Phase("forward_backward", s.forward_backward_seconds);
    metrics.Phase("allreduce", s.allreduce_seconds);
    metrics.Phase("optimizer", s.optimizer_seconds);
    metrics.steps.Increment();
    metrics.step.Set(static_cast<double>(trainer->step()));
    metrics.loss.Set(s.loss);
    metrics.pg_loss.Set(s.pg_loss);
    metrics.kl.Set(s.kl);
    metrics.entropy.Set(s.entropy);
    metrics.grad_norm.Set(s.grad_norm);
    metrics.lr.Set(s.lr);
    metrics.reward.Set(s.reward_mean);
    // Exact match of the final answers (the "em_raw" reward part), over the
    // trajectories that carry it.
    double em_sum = 0, em_count = 0;
    for (const auto& g : groups) {
      for (const auto& t : g.trajectories()) {
        for (const v1::RewardComponent& c : t.final_rewards()) {
          if (c.name() != "em_raw") continue;
          em_sum += c.value();
          em_count += 1;
        }
      }
    }
    const double em_mean = em_count > 0 ? em_sum / em_count : 0.0;
    metrics.em.Set(em_mean);
    metrics.advantage_mean.Set(s.advantage_mean);
    metrics.advantage_std.Set(s.advantage_std);
    metrics.clip.Set(s.clip_fraction);
    metrics.tokens.Increment(static_cast<double>(s.tokens));
    metrics.trained_groups.Increment(static_cast<double>(groups.size()));
    service.SetProgress(static_cast<uint64_t>(trainer->step()), s.reward_mean);

    nlohmann::json line;
    line["step"] = trainer->step();
    line["version"] = version;
    line["time"] = absl::ToUnixMillis(absl::Now()) / 1000.0;
    line["loss"] = s.loss;
    line["pg_loss"] = s.pg_loss;
    line["kl"] = s.kl;
    line["entropy"] = s.entropy;
    line["clip_fraction"] = s.clip_fraction;
    line["grad_norm"] = s.grad_norm;
    line["lr"] = s.lr;
    line["reward_mean"] = s.reward_mean;
    line["em_mean"] = em_mean;
    line["advantage_mean"] = s.advantage_mean;
    line["advantage_std"] = s.advantage_std;
    line["tokens"] = s.tokens;
    line["actions"] = s.actions;
    line["trajectories"] = s.trajectories;
    line["staleness_mean"] = staleness_sum / static_cast<double>(groups.size());
    line["staleness_max"] = staleness_max;
    std::vector<std::string> ids;
    for (const auto& g : groups) ids.push_back(g.group_id());
    line["groups"] = ids;
    line["seconds"] = {{"wait", wait_s},
                       {"forward_backward", s.forward_backward_seconds},
                       {"allreduce", s.allreduce_seconds},
                       {"optimizer", s.optimizer_seconds},
                       {"publish", publish_s}};
    step_log.Write(line);
    LOG(INFO) << "step " << trainer->step() << " loss " << s.loss << " reward "
              << s.reward_mean << " em " << em_mean << " tokens " << s.tokens
              << " actions " << s.actions << " clip " << s.clip_fraction << " kl "
              << s.kl << " grad_norm " << s.grad_norm << " version " << version;
    if (every > 0 && trainer->step() % every == 0) {
      if (absl::Status st = checkpoint(); !st.ok()) {
        failed = st;
        break;
      }
    }
  }
  // The run ends (max_steps, shutdown or an error): leave a checkpoint to resume,
  // unless the journal failed. Then the groups acknowledged since the last
  // checkpoint may be on disk in its journal only, and a new checkpoint would go
  // to the disk that failed: the restarted learner resumes from the last one.
  if (absl::Status st = ingestor.failure(); !st.ok()) {
    LOG(ERROR) << "learner: stopping without a checkpoint (" << st.message()
               << "); a restart resumes from step " << checkpointed
               << " and replays that checkpoint's journal";
    if (failed.ok()) failed = st;
  } else if (trainer->step() > checkpointed) {
    absl::Status st = checkpoint();
    if (!st.ok()) {
      LOG(ERROR) << "learner: the final checkpoint failed: " << st;
      if (failed.ok()) failed = st;
    }
  }
  // A finished run tells its actors to stop (in heartbeat and registration replies); a
  // learner that was stopped or failed leaves them waiting to reconnect to its
  // successor.
  if (failed.ok() && max_steps > 0 && trainer->step() >= max_steps) {
    service.RequestShutdown();
    int untold = service.WaitUntilActorsTold(absl::Now() + absl::Seconds(15));
    if (untold > 0) {
      LOG(WARNING) << "learner: " << untold
                   << " actors did not hear that the run ended";
    }
  }
  ingestor.Close();
  publisher.Close();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return failed;
}

}  // namespace
}  // namespace nbrl::learner

int main(int argc, char** argv) {
  nbrl::common::ProgramSpec spec;
  spec.name = "nbrl-learner";
  spec.component = "learner";
  spec.summary = "a learner rank: ingests trajectory groups, trains, publishes weights";
  spec.run = nbrl::learner::Run;
  spec.shutdown_grace_key = "learner.shutdown_grace";
  spec.validate = [](const nbrl::common::Config& c, const std::vector<std::string>&) {
    return nbrl::common::ValidateServerAuth(nbrl::common::AuthOptionsFrom(c),
                                            c.GetString("learner.address"));
  };
  return nbrl::common::RunProgram(spec, argc, argv);
}
