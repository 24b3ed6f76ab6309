// SequenceBatch: B token sequences that grow together over one KV cache — the
// actor's running episodes. Append() adds tokens to rows (a prompt, an observation)
// and computes only those; Generate() samples continuations for some rows;
// Reset() drops a row's cache and rebuilds it from a trimmed context.
//
//   ASSIGN_OR_RETURN(auto batch, SequenceBatch::Create(model.get(), /*batch_size=*/2));
//   RETURN_IF_ERROR(batch->Append({prompt_a, prompt_b}));
//   ASSIGN_OR_RETURN(auto actions, batch->Generate(sampling));
//   RETURN_IF_ERROR(batch->Append({observation_a, {}}));   // no recomputation
//   ASSIGN_OR_RETURN(auto next, batch->Generate(sampling, /*active=*/{true, false}));
//
// Rows have their own lengths and rotary positions; a row's results do not depend on
// what the other rows hold (up to float summation order). Tokens are fed lazily:
// the last sampled token of a row enters the cache with the row's next Append or
// Generate, so nothing is computed twice and nothing is computed for a token that
// never gets a successor.
//
// Not thread-safe. The model must outlive the batch.
#ifndef NBRL_MODEL_SEQUENCE_BATCH_H_
#define NBRL_MODEL_SEQUENCE_BATCH_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "model/sampler.h"
#include "model/transformer.h"

namespace nbrl::model {

enum class FinishReason {
  kLength,         // max_new_tokens reached
  kEos,            // sampled one of eos_ids
  kStopSequence,   // generated ids end with a stop sequence
  kStopPredicate,  // stop_predicate returned true
  kContextLimit,   // the row reached the model's max_position_embeddings
};
const char* FinishReasonName(FinishReason reason);

// What one Generate call produced for one row.
struct Generation {
  std::vector<int64_t> tokens;  // sampled ids, the stopping ones included
  // Per token: log-probability under the sampling distribution (sampler.h).
  std::vector<float> logprobs;
  // Per token: log softmax(logits / temperature), before top-k / top-p.
  std::vector<float> untruncated_logprobs;
  FinishReason finish_reason = FinishReason::kLength;
};

class SequenceBatch {
 public:
  // Longest chunk of pending tokens one forward processes (longer prompts are fed in
  // pieces, bounding the attention scores' memory).
  static constexpr int64_t kMaxChunk = 512;

  // InvalidArgument for batch_size < 1.
  static absl::StatusOr<std::unique_ptr<SequenceBatch>> Create(Transformer* model,
                                                               int64_t batch_size);

  int64_t batch_size() const { return static_cast<int64_t>(tokens_.size()); }
  // Every token of a row: appended and generated, in order.
  const std::vector<int64_t>& tokens(int64_t row) const { return tokens_[row]; }
  // Tokens of a row whose keys and values are in the cache.
  int64_t cached_tokens(int64_t row) const { return cache_.lengths()[row]; }

  // Appends tokens to rows: `tokens` has one entry per row (empty leaves a row
  // alone). InvalidArgument for the wrong row count, an id outside the vocabulary
  // or a row longer than max_position_embeddings; Internal when libtorch fails.
  absl::Status Append(const std::vector<std::vector<int64_t>>& tokens);

  // Samples up to options.max_new_tokens tokens for each row with active[row]
  // (every row when `active` is empty) and appends them. FailedPrecondition for an
  // active row with no tokens; InvalidArgument for bad options.
  absl::StatusOr<std::vector<Generation>> Generate(
      const SamplingOptions& options, const std::vector<bool>& active = {});

  // Drops a row's cache and makes `tokens` its whole sequence (computed lazily).
  absl::Status Reset(int64_t row, const std::vector<int64_t>& tokens);
  // Keeps the first `length` tokens of a row and their cached keys and values, so a
  // context that shares a prefix with the row is extended instead of recomputed.
  // InvalidArgument when the row is shorter than `length`.
  absl::Status Truncate(int64_t row, int64_t length);

 private:
  SequenceBatch(Transformer* model, int64_t batch_size);

  // Feeds every row's pending tokens through the model; afterwards next_logits_
  // holds the next-token logits of each row that has tokens.
  absl::Status Flush();
  void FlushChunk();
  absl::Status CheckIds(const std::vector<int64_t>& ids) const;

  Transformer* const model_;
  KvCache cache_;
  std::vector<std::vector<int64_t>> tokens_;  // per row, all tokens
  torch::Tensor next_logits_;                 // [B, V] float32 on the model's device
};

// One-shot batched generation: a SequenceBatch with one row per prompt.
absl::StatusOr<std::vector<Generation>> Generate(
    Transformer* model, const std::vector<std::vector<int64_t>>& prompts,
    const SamplingOptions& options);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_SEQUENCE_BATCH_H_
