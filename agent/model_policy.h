// The model as the agent's policy: batched sampling over the episodes of an actor,
// one SequenceBatch row (and KV cache) per running episode.
//
// The row keeps the longest prefix it shares with the episode's new context, with
// its cached keys and values, and only the rest is computed: with the Notepad
// rendered last, that is the new step and the new Notepad, not the whole history.
// Trimming old steps shortens the shared prefix to the system prompt and task.
// Generation stops at the end-of-code marker (action_parser.h) or at EOS.
//
// Not thread-safe: one actor thread drives it.
#ifndef NBRL_AGENT_MODEL_POLICY_H_
#define NBRL_AGENT_MODEL_POLICY_H_

#include <map>
#include <memory>
#include <vector>

#include "agent/policy.h"
#include "model/sampler.h"
#include "model/sequence_batch.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace nbrl::agent {

struct ModelPolicyOptions {
  // Episodes running at once, at most (rows of the batch).
  int max_episodes = 8;
  // Sampling (max_new_tokens is taken from each request).
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 1;
};

class ModelPolicy : public Policy {
 public:
  // Not owned; must outlive the policy. InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<ModelPolicy>> Create(
      model::Transformer* model, const model::Tokenizer* tokenizer,
      ModelPolicyOptions options);

  // ResourceExhausted when more than max_episodes episodes are running.
  absl::StatusOr<std::vector<PolicyResponse>> Act(
      absl::Span<const PolicyRequest> requests) override;
  void EndEpisode(uint64_t episode_id) override;

  // The version stamped on actions; set after loading new weights.
  void set_version(uint64_t version) { version_ = version; }
  uint64_t version() const { return version_; }
  // Drops every cache (after the weights changed).
  absl::Status ResetAll();

  // Tokens computed for contexts (appended or rebuilt) since creation: a measure of
  // how much the multi-turn cache saves.
  int64_t context_tokens_computed() const { return context_tokens_computed_; }

 private:
  ModelPolicy() = default;

  model::Transformer* model_ = nullptr;
  const model::Tokenizer* tokenizer_ = nullptr;
  ModelPolicyOptions options_;
  std::unique_ptr<model::SequenceBatch> batch_;
  std::map<uint64_t, int64_t> row_of_;  // episode -> row
  std::vector<bool> row_used_;
  std::vector<int64_t> eos_ids_;
  uint64_t version_ = 0;
  uint64_t calls_ = 0;
  int64_t context_tokens_computed_ = 0;
};

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_MODEL_POLICY_H_
