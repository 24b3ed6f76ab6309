// Sampling one token per row from next-token logits, and the options that shape
// the sampling distribution.
//
// The sampling distribution of a row is: logits / temperature, then top-k (keep
// the k largest), then top-p (keep the smallest set of most likely tokens whose
// probability reaches top_p), renormalised. A token's `logprob` is its
// log-probability under that distribution (what the actor records as the behaviour
// policy: it is the distribution the token was actually drawn from).
// `untruncated_logprob` is log softmax(logits / temperature) before top-k / top-p;
// ScoreTokens at the same temperature computes exactly that. With top_k = 0 and
// top_p = 1 the two are equal. Temperature 0 is greedy decoding: the sampling
// distribution is a point mass, so logprob = 0.
#ifndef NBRL_MODEL_SAMPLER_H_
#define NBRL_MODEL_SAMPLER_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"

namespace nbrl::model {

struct SamplingOptions {
  // Divides the logits; 0 means greedy (argmax). Must be >= 0.
  double temperature = 1.0;
  // Keep only the k most likely tokens; 0 keeps all.
  int64_t top_k = 0;
  // Nucleus sampling: keep the most likely tokens up to this total probability;
  // 1 keeps all. In (0, 1].
  double top_p = 1.0;
  // Most tokens one Generate call appends to a row.
  int64_t max_new_tokens = 256;
  // A row stops after sampling any of these ids (the id is kept in its output).
  std::vector<int64_t> eos_ids;
  // A row stops when its generated ids end with one of these sequences (kept in the
  // output). Stop strings such as the end-of-code marker are given as their token
  // ids; use stop_predicate for matches that do not follow token boundaries.
  std::vector<std::vector<int64_t>> stop_sequences;
  // Called after each sampled token with the row and the ids this call generated
  // for it so far; true stops the row. May be empty.
  std::function<bool(int64_t row, const std::vector<int64_t>& generated)>
      stop_predicate;
  // Seed of the random stream of one Generate call: the same seed, model, batch and
  // options give the same tokens.
  uint64_t seed = 0;
};

// InvalidArgument naming the field when an option is out of range.
absl::Status ValidateSamplingOptions(const SamplingOptions& options);

struct SampledTokens {
  torch::Tensor tokens;                // [N] int64
  torch::Tensor logprobs;              // [N] float32, under the sampling distribution
  torch::Tensor untruncated_logprobs;  // [N] float32, log softmax(logits / T)
};

// logits [N, V] (any float dtype) -> one token per row, drawn with `generator`
// (on the logits' device). Throws c10::Error on bad input.
SampledTokens SampleTokens(const torch::Tensor& logits, const SamplingOptions& options,
                           at::Generator generator);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_SAMPLER_H_
