// nbrl-learner: one learner rank. Serves LearnerService (actors push trajectory
// groups, follow weights), takes `learner.batch_groups` groups per optimizer step,
// and (rank 0) publishes each new version of the weights.
//
// Prints "ready address=HOST:PORT" once serving. Stops at learner.max_steps or on
// SIGINT/SIGTERM, finishing the step in progress.
#include <grpcpp/grpcpp.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "learner/learner_service.h"
#include "learner/trainer.h"
#include "model/checkpoint.h"
#include "model/weight_codec.h"

namespace nbrl::learner {
namespace {

TrainerOptions TrainerOptionsFrom(const common::Config& c) {
  TrainerOptions o;
  o.mode = c.GetString("learner.mode");
  o.advantages.estimator = c.GetString("learner.advantage");
  o.advantages.gamma = c.GetDouble("learner.gamma");
  o.loss.clip_low = c.GetDouble("learner.clip_low");
  o.loss.clip_high = c.GetDouble("learner.clip_high");
  o.loss.dual_clip = c.GetDouble("learner.dual_clip");
  o.loss.aggregation = c.GetString("learner.aggregation");
  o.lr = c.GetDouble("learner.lr");
  o.weight_decay = c.GetDouble("learner.weight_decay");
  o.warmup_steps = c.GetInt("learner.warmup_steps");
  o.max_grad_norm = c.GetDouble("learner.max_grad_norm");
  o.microbatch_tokens = c.GetInt("learner.microbatch_tokens");
  return o;
}

// Step metrics exported per optimizer step.
struct StepMetrics {
  explicit StepMetrics(prometheus::Registry& r)
      : steps(common::CounterFamily(r, "nbrl_learner_steps_total", "Optimizer steps.")
                  .Add({})),
        loss(common::GaugeFamily(r, "nbrl_learner_loss", "Loss of the last step.")
                 .Add({})),
        reward(common::GaugeFamily(r, "nbrl_learner_reward_mean",
                                   "Mean total reward of the last step's trajectories.")
                   .Add({})),
        clip(common::GaugeFamily(r, "nbrl_learner_clip_fraction_ratio",
                                 "Fraction of tokens clipped in the last step.")
                 .Add({})),
        tokens(common::CounterFamily(r, "nbrl_learner_tokens_total",
                                     "Action tokens trained on.")
                   .Add({})),
        step_seconds(common::HistogramFamily(r, "nbrl_learner_step_seconds",
                                             "Time of the parts of a step.")),
        version(common::GaugeFamily(r, "nbrl_learner_policy_version",
                                    "Newest published weight version.")
                    .Add({})) {}
  prometheus::Counter& steps;
  prometheus::Gauge& loss;
  prometheus::Gauge& reward;
  prometheus::Gauge& clip;
  prometheus::Counter& tokens;
  prometheus::Family<prometheus::Histogram>& step_seconds;
  prometheus::Gauge& version;
};

absl::Status Run(common::ProcessContext& ctx) {
  const common::Config& c = *ctx.config;
  const int rank = static_cast<int>(c.GetInt("process.rank"));
  const std::string model_path = c.GetString("model.path");
  if (model_path.empty()) {
    return absl::InvalidArgumentError("model.path is empty: give a checkpoint folder");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<model::Transformer> policy,
                   model::LoadTransformer(model_path));

  DataParallelOptions dpo;
  dpo.rank = rank;
  dpo.world_size = static_cast<int>(c.GetInt("learner.world_size"));
  const std::string store = c.GetString("learner.store_address");
  dpo.store_host = store.substr(0, store.rfind(':'));
  dpo.store_port = std::atoi(store.substr(store.rfind(':') + 1).c_str());
  ASSIGN_OR_RETURN(std::unique_ptr<DataParallel> dp, DataParallel::Create(dpo));
  ASSIGN_OR_RETURN(
      std::unique_ptr<Trainer> trainer,
      Trainer::Create(policy.get(), nullptr, dp.get(), TrainerOptionsFrom(c)));

  IngestorOptions io;
  io.capacity = static_cast<size_t>(c.GetInt("learner.queue_groups"));
  io.max_staleness = static_cast<uint64_t>(c.GetInt("learner.max_staleness"));
  io.uniform_group_keep = c.GetDouble("learner.uniform_group_keep");
  io.limits.vocab_size = policy->config().vocab_size;
  io.seed = static_cast<uint64_t>(c.GetInt("run.seed"));
  Ingestor ingestor(io, ctx.registry.get());
  WeightPublisherOptions wpo;
  wpo.chunk_bytes = static_cast<size_t>(c.GetInt("learner.chunk_bytes"));
  WeightPublisher publisher(wpo, ctx.registry.get());
  LearnerServiceOptions so;
  so.run_id = ctx.run_dir;
  so.rank = static_cast<uint32_t>(rank);
  so.world_size = static_cast<uint32_t>(dpo.world_size);
  LearnerServiceImpl service(so, &ingestor, &publisher);

  uint64_t version = 1;
  ASSIGN_OR_RETURN(common::WeightVersion first,
                   model::EncodeWeights(policy->StateDict(), version, 0));
  publisher.Publish(std::make_shared<common::WeightVersion>(std::move(first)));

  grpc::ServerBuilder builder;
  int port = 0;
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.AddListeningPort(c.GetString("learner.address"),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", c.GetString("learner.address")));
  }
  const std::string host = c.GetString("learner.address")
                               .substr(0, c.GetString("learner.address").rfind(':'));
  ctx.shutdown->OnShutdown([&] {
    ingestor.Close();
    publisher.Close();
  });
  std::cout << "ready address=" << host << ":" << port << std::endl;
  LOG(INFO) << "learner: rank " << rank << " serving on " << host << ":" << port
            << ", model " << model_path << " ("
            << model::ParameterCount(policy->config()) << " parameters)";

  StepMetrics metrics(*ctx.registry);
  const size_t batch = static_cast<size_t>(c.GetInt("learner.batch_groups"));
  const int64_t max_steps = c.GetInt("learner.max_steps");
  while (!ctx.shutdown->requested() &&
         (max_steps == 0 || trainer->step() < max_steps)) {
    // Waits for a full batch; shutdown closes the ingestor, which wakes this with
    // whatever is queued (a last, partial batch) or nothing.
    std::vector<v1::TrajectoryGroup> groups =
        ingestor.Take(batch, batch, absl::InfiniteFuture());
    if (groups.empty()) break;
    ASSIGN_OR_RETURN(StepStats s, trainer->Step(groups));
    if (rank == 0) {
      ++version;
      absl::Time t = absl::Now();
      ASSIGN_OR_RETURN(common::WeightVersion w,
                       model::EncodeWeights(policy->StateDict(), version,
                                            static_cast<uint64_t>(trainer->step())));
      publisher.Publish(std::make_shared<common::WeightVersion>(std::move(w)));
      metrics.step_seconds.Add({{"phase", "publish"}}, common::LatencyBucketsSeconds())
          .Observe(absl::ToDoubleSeconds(absl::Now() - t));
      metrics.version.Set(static_cast<double>(version));
    }
    metrics.steps.Increment();
    metrics.loss.Set(s.loss);
    metrics.reward.Set(s.reward_mean);
    metrics.clip.Set(s.clip_fraction);
    metrics.tokens.Increment(static_cast<double>(s.tokens));
    metrics.step_seconds
        .Add({{"phase", "forward_backward"}}, common::LatencyBucketsSeconds())
        .Observe(s.forward_backward_seconds);
    metrics.step_seconds.Add({{"phase", "allreduce"}}, common::LatencyBucketsSeconds())
        .Observe(s.allreduce_seconds);
    metrics.step_seconds.Add({{"phase", "optimizer"}}, common::LatencyBucketsSeconds())
        .Observe(s.optimizer_seconds);
    service.SetProgress(static_cast<uint64_t>(trainer->step()), s.reward_mean);
    LOG(INFO) << "step " << trainer->step() << " loss " << s.loss << " reward "
              << s.reward_mean << " tokens " << s.tokens << " actions " << s.actions
              << " clip " << s.clip_fraction << " grad_norm " << s.grad_norm
              << " version " << publisher.current_version();
  }
  service.RequestShutdown();
  ingestor.Close();
  publisher.Close();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return absl::OkStatus();
}

}  // namespace
}  // namespace nbrl::learner

int main(int argc, char** argv) {
  nbrl::common::ProgramSpec spec;
  spec.name = "nbrl-learner";
  spec.component = "learner";
  spec.summary = "a learner rank: ingests trajectory groups, trains, publishes weights";
  spec.run = nbrl::learner::Run;
  return nbrl::common::RunProgram(spec, argc, argv);
}
