// Advantage estimators. All tokens of one action share its advantage.
//
//  - "reinforce++" (L0's recipe): per trajectory, the discounted return of each step,
//    G_t = r_t + gamma * G_{t+1}, then whitened over every action in the batch:
//    A = (G - mean) / (std + eps).
//  - "grpo": per group (the rollouts of one prompt), each trajectory's total reward
//    minus the group mean, divided by the group's std (+ eps) when `grpo_scale` is
//    set; every action of the trajectory gets it. A group whose rewards are all equal
//    gives zeros.
//
// Thread safety: pure functions.
#ifndef NBRL_LEARNER_ADVANTAGES_H_
#define NBRL_LEARNER_ADVANTAGES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nbrl::learner {

struct AdvantageOptions {
  // "reinforce++" or "grpo".
  std::string estimator = "reinforce++";
  // Discount between steps (reinforce++).
  double gamma = 0.95;
  // Divide by the group std (grpo).
  bool grpo_scale = true;
  // Added to std before dividing.
  double eps = 1e-6;
  // Whiten the reinforce++ returns over this batch. Off: return the raw discounted
  // returns (the data-parallel trainer whitens over all ranks itself).
  bool whiten = true;
  // Factor on negative advantages, applied last (ScaleNegativeAdvantages), after
  // any whitening: 1 is the plain estimator; below 1 the update leans on the
  // rollouts that beat their baseline. Pushing down the tokens of failed samples
  // raises every other token and widens the distribution; scaling them down is
  // meant to sharpen it (on the quickstart at temperature 1 it did not:
  // docs/algorithm.md).
  double negative_scale = 1.0;
};

struct TrajectoryRewards {
  // Index of the trajectory's group in the batch.
  int group = 0;
  // Reward of each step (answer components on the last step); at least one.
  std::vector<double> step_rewards;
};

// Advantage of every step of every trajectory, in the same shape as the input.
// InvalidArgument for an unknown estimator, a trajectory without steps, a
// non-finite reward, or gamma outside [0, 1].
absl::StatusOr<std::vector<std::vector<double>>> ComputeAdvantages(
    const AdvantageOptions& options, const std::vector<TrajectoryRewards>& batch);

// Multiplies every negative advantage by `scale` (in [0, 1]); the rest are kept.
void ScaleNegativeAdvantages(double scale,
                             std::vector<std::vector<double>>* advantages);

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_ADVANTAGES_H_
