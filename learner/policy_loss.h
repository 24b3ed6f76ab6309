// The agentic policy-gradient loss, over the generated tokens of a batch of actions.
//
// Per token t of an action with advantage A (shared by all its tokens):
//   ratio  r = exp(logp - logp_behaviour), truncated: r = min(r, ratio_cap)
//   pg     = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))   (asymmetric clip)
//   if A < 0: pg = min(pg, -A dual_clip)                           (dual clip)
//   kl     = exp(ref - logp) - (ref - logp) - 1                     (k3, when a
//   reference is given) loss_t = pg + kl_coef kl - entropy_coef entropy
// The ratio is taken against the behaviour log-probs the actor recorded, so stale
// samples (from older policy versions) are corrected and their weight bounded by the
// clips and the truncation.
//
// Aggregation: "token-mean" averages over every generated token of the batch;
// "action-mean" averages tokens within each action, then over actions (so long
// actions do not dominate).
//
// SFT mode (SftLoss) is the mean negative log-likelihood over the same tokens.
#ifndef NBRL_LEARNER_POLICY_LOSS_H_
#define NBRL_LEARNER_POLICY_LOSS_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"

namespace nbrl::learner {

struct PolicyLossOptions {
  double clip_low = 0.2;
  double clip_high = 0.28;
  // Dual-clip constant c > 1 bounding the loss of negative-advantage tokens; 0: off.
  double dual_clip = 3.0;
  // Upper bound of the importance ratio before clipping; 0: no truncation.
  double ratio_cap = 10.0;
  double kl_coef = 0.0;
  double entropy_coef = 0.0;
  // "token-mean" or "action-mean".
  std::string aggregation = "token-mean";
};

// The tokens of a batch, flattened: one entry per generated token. All 1-D tensors
// of the same length N on one device; `logp` carries gradients.
struct PolicyLossInputs {
  torch::Tensor logp;            // [N] log-probs under the policy being trained
  torch::Tensor logp_behaviour;  // [N] what the actor recorded
  torch::Tensor advantages;      // [N] the action's advantage, repeated per token
  torch::Tensor action_index;    // [N] int64: which action each token belongs to
  torch::Tensor logp_reference;  // [N] optional (undefined: no KL)
  torch::Tensor entropy;         // [N] optional, for the bonus and the report
};

struct PolicyLossResult {
  torch::Tensor loss;  // scalar, differentiable
  // Reported (detached, as doubles).
  double pg_loss = 0;
  double kl = 0;
  double entropy = 0;
  double clip_fraction = 0;       // tokens where a clip was the active branch
  double dual_clip_fraction = 0;  // tokens where the dual clip was active
  double ratio_mean = 0;
  double ratio_max = 0;
  int64_t tokens = 0;
  int64_t actions = 0;
};

// InvalidArgument for mismatched shapes, an empty batch, non-finite inputs or bad
// options (clip_low not in [0, 1), clip_high < 0, dual_clip in (0, 1], unknown
// aggregation).
absl::StatusOr<PolicyLossResult> PolicyLoss(const PolicyLossOptions& options,
                                            const PolicyLossInputs& inputs);

// Mean negative log-likelihood of `logp` ([N], with gradients), averaged per
// `aggregation` over `action_index`.
absl::StatusOr<torch::Tensor> SftLoss(const torch::Tensor& logp,
                                      const torch::Tensor& action_index,
                                      const std::string& aggregation);

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_POLICY_LOSS_H_
