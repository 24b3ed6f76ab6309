// The policy that writes the agent's actions, behind one interface: the model
// (batched generation with a multi-turn KV cache) or a scripted policy.
#ifndef NBRL_AGENT_POLICY_H_
#define NBRL_AGENT_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "agent/dataset.h"
#include "agent/sandbox_client.h"

namespace nbrl::agent {

// What an episode looks like to a policy that reads structure rather than tokens
// (a scripted policy). Valid during the Act call only.
struct EpisodeView {
  const Example* example = nullptr;
  int step = 0;  // 0 for the first action
  // The last cell's result; nullptr before the first cell or when the last action
  // was malformed.
  const CellResult* last_result = nullptr;
  // Why the last action was rejected, when it was.
  std::string last_action_error;
};

struct PolicyRequest {
  // Stable for the episode: a policy may keep per-episode state (a KV cache) under
  // it until EndEpisode.
  uint64_t episode_id = 0;
  // The full context, as token ids. Between two requests of one episode it may be
  // an extension of the previous context or may share only a prefix with it.
  absl::Span<const int32_t> context;
  EpisodeView view;
  // Most tokens to generate for this action.
  int max_new_tokens = 512;
};

struct PolicyResponse {
  // Sampled token ids of the action and each one's log-probability under the
  // sampling distribution (0 for a policy that does not sample).
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  // True when generation ended at the end-of-code marker (or EOS); false when
  // it ran out of tokens.
  bool finished = false;
  // Version of the weights that produced the action.
  uint64_t policy_version = 0;
};

class Policy {
 public:
  virtual ~Policy() = default;
  // One action for each request, in order. A non-OK status fails the whole batch.
  virtual absl::StatusOr<std::vector<PolicyResponse>> Act(
      absl::Span<const PolicyRequest> requests) = 0;
  // The episode is over: drop its state.
  virtual void EndEpisode(uint64_t episode_id) { (void)episode_id; }
};

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_POLICY_H_
