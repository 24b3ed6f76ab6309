// One learner rank's optimisation: turns trajectory groups into scored actions and
// takes one optimizer step. The step is one visible function (Trainer::Step):
// advantages, forward (teacher-forced scoring), loss, backward, all-reduce, clip,
// AdamW step, metrics.
//
// Each action (think + code) is scored given the exact context it was sampled from
// (its spans of the trajectory's token pool); only the action's tokens carry loss,
// so observations are masked out. The loss is normalised by the token (or action)
// count over all ranks, and gradients are summed across ranks, so W ranks on a split
// batch take the same step as one rank on the whole batch.
//
// Not thread-safe: one thread drives a trainer.
#ifndef NBRL_LEARNER_TRAINER_H_
#define NBRL_LEARNER_TRAINER_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "learner/advantages.h"
#include "learner/data_parallel.h"
#include "learner/policy_loss.h"
#include "model/fused_adamw.h"
#include "model/transformer.h"
#include "nbrl/v1/learner.pb.h"

namespace nbrl::learner {

struct TrainerOptions {
  // "rl": the policy-gradient loss; "sft": cross-entropy on the actions
  // (demonstrations), same data path.
  std::string mode = "rl";
  AdvantageOptions advantages;
  PolicyLossOptions loss;
  // AdamW (model::FusedAdamW: torch::optim::AdamW's update in one pass).
  double lr = 1e-6;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double adam_eps = 1e-8;
  // Clip the global gradient norm to this (0: no clipping).
  double max_grad_norm = 1.0;
  // Linear warm-up over this many steps, then "constant" or "cosine" decay to 10%
  // of lr at `total_steps`.
  int64_t warmup_steps = 0;
  std::string schedule = "constant";
  int64_t total_steps = 0;
  // Padded tokens per forward/backward pass (gradient accumulation beyond).
  int64_t microbatch_tokens = 8192;
  // RL: the logits are divided by the actors' sampling temperature before the
  // log-softmax, so the policy scored is the distribution the actions were sampled
  // from (the behaviour log-probs are at that temperature too). SFT uses 1.
  double temperature = 1.0;
};

struct StepStats {
  int64_t step = 0;
  double loss = 0, pg_loss = 0, kl = 0, entropy = 0, clip_fraction = 0;
  double grad_norm = 0, lr = 0;
  double advantage_mean = 0, advantage_std = 0;
  double reward_mean = 0;  // mean total reward of this rank's trajectories
  int64_t tokens = 0, actions = 0, trajectories = 0;  // this rank's
  double forward_backward_seconds = 0, allreduce_seconds = 0, optimizer_seconds = 0;
};

class Trainer {
 public:
  // `policy` is trained; `reference` (may be null) is the frozen model of the KL
  // term; `dp` (may be null for one rank). Not owned. Broadcasts rank 0's
  // parameters so every rank starts equal. InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(model::Transformer* policy,
                                                         model::Transformer* reference,
                                                         DataParallel* dp,
                                                         TrainerOptions options);

  // One optimizer step on this rank's share of the batch (every rank calls it
  // together). InvalidArgument for groups whose spans do not fit their tokens
  // (the ingestor validates first, so this is a bug upstream).
  absl::StatusOr<StepStats> Step(const std::vector<v1::TrajectoryGroup>& groups);

  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  // The learning rate the schedule gives at `step`.
  double LearningRate(int64_t step) const;

 private:
  Trainer() = default;

  model::Transformer* policy_ = nullptr;
  model::Transformer* reference_ = nullptr;
  DataParallel* dp_ = nullptr;
  TrainerOptions options_;
  std::unique_ptr<model::FusedAdamW> optimizer_;
  std::vector<torch::Tensor> params_;
  int64_t step_ = 0;
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_TRAINER_H_
