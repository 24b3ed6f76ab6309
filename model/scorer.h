// Teacher-forced scoring for the learner: the log-probability the model assigns to
// each given token, batched with padding, differentiable.
//
//   PaddedBatch batch = PadSequences(sequences);
//   ASSIGN_OR_RETURN(torch::Tensor logp, ScoreTokens(model, batch.tokens, batch.mask));
//   torch::Tensor loss = -(logp * loss_mask).sum() / loss_mask.sum();
//   loss.backward();
#ifndef NBRL_MODEL_SCORER_H_
#define NBRL_MODEL_SCORER_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace nbrl::model {

struct ScoreOptions {
  // Divides the logits, as in sampling: scoring at the generation temperature gives
  // the untruncated log-probs of generation (sampler.h). Must be > 0.
  double temperature = 1.0;
};

// Right-padded batch of token sequences.
struct PaddedBatch {
  torch::Tensor tokens;  // [B, T] int64, pad_id at padding
  torch::Tensor mask;    // [B, T] bool, true at real tokens
};
PaddedBatch PadSequences(const std::vector<std::vector<int64_t>>& sequences,
                         int64_t pad_id = 0);

// log p(targets | hidden) under the model's output head at `temperature`:
// hidden [..., D] (the final norm's output), targets [...] int64 in [0, V) ->
// [...] float32, differentiable in `hidden` and the head's weight. The same value as
// gathering log_softmax(model.Logits(hidden) / temperature), fused: the head runs in
// row chunks of at most about 8 MiB of logits, each chunk's log-softmax is computed
// in place in its logits and kept, and the backward turns those buffers into the
// logits' gradient in place (minus the softmax, plus one at the target, scaled) before
// the two GEMMs of the head's gradient. So no pass allocates another [N, V] tensor,
// and the chunks come from the heap instead of fresh page-faulted mappings. The
// head's gradient is summed in fp32 over the chunks. The backward can run once per
// forward (a second one, with retain_graph, is refused by autograd's version
// check) and is not itself differentiable (no create_graph). Targets are not
// range-checked here: callers check them.
torch::Tensor TargetLogProbs(Transformer& model, const torch::Tensor& hidden,
                             const torch::Tensor& targets, double temperature = 1.0);

// tokens [B, T] int64, mask [B, T] bool whose true entries form one contiguous run
// per row (left or right padding) -> log-probs [B, T] float32 on the model's device:
// entry t is log p(tokens[t] | the row's real tokens before t) at `temperature`,
// and 0 at padding and at each row's first real token. Carries gradients to the
// model's parameters unless called under torch::NoGradGuard.
// InvalidArgument for mismatched shapes, a non-contiguous mask or an id outside the
// vocabulary; Internal when libtorch fails.
absl::StatusOr<torch::Tensor> ScoreTokens(Transformer& model,
                                          const torch::Tensor& tokens,
                                          const torch::Tensor& mask,
                                          const ScoreOptions& options = {});

}  // namespace nbrl::model

#endif  // NBRL_MODEL_SCORER_H_
