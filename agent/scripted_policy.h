// A scripted expert for the embedded task world: it solves a question by following
// the solution plan in the example's metadata through the real sandbox and its
// tools, writing proper <think>/<code> actions and keeping the Notepad. One hop per
// step: search the document by its title, read it, extract the field into a Python
// variable (v0, v1, ...), note the fact; a last step computes and submits the
// answer. Later hops refer to earlier variables, so the policy never needs to read
// the observations, except to retry a hop whose cell failed.
//
// Noise makes its demonstrations imperfect: with probability `noise` an episode
// gets one fault, drawn uniformly from `faults` with the episode id and seed: a
// wrong hop field (`field`), a skipped check of the search hit's title (`check`),
// or a copy error in the submitted answer (`copy`). A model trained on the
// demonstrations imitates a fault it sees often enough; RL on the answer's reward
// can unlearn it.
//
// An example without a plan (the minimal family, or any dataset with answers)
// gets a one-action demonstration that submits its first gold answer; a faulty
// episode submits it with a "1" appended.
//
// It is the demonstrator for warm starts and the upper bound in reports. Its
// actions carry log-prob 0 (it does not sample). Thread-compatible.
#ifndef NBRL_AGENT_SCRIPTED_POLICY_H_
#define NBRL_AGENT_SCRIPTED_POLICY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/policy.h"
#include "model/tokenizer.h"

namespace nbrl::agent {

// The expert's mistakes, in the order ParseScriptedFaults names them.
enum class ScriptedFault { kField = 0, kCheck = 1, kCopy = 2 };

// "field", "check" and "copy" in order; InvalidArgument naming an unknown or
// repeated name, or an empty list.
absl::StatusOr<std::vector<ScriptedFault>> ParseScriptedFaults(
    const std::vector<std::string>& names);

struct ScriptedPolicyOptions {
  // Probability that an episode has one fault.
  double noise = 0.0;
  // The faults a faulty episode draws from, uniformly. Must not be empty.
  std::vector<ScriptedFault> faults = {ScriptedFault::kField, ScriptedFault::kCheck,
                                       ScriptedFault::kCopy};
  uint64_t seed = 1;
  // Search hits fetched per query.
  int search_k = 5;
};

class ScriptedPolicy : public Policy {
 public:
  // `tokenizer` is not owned and must outlive the policy.
  ScriptedPolicy(const model::Tokenizer* tokenizer, ScriptedPolicyOptions options);

  // FailedPrecondition for an example with neither a plan nor an answer, or with a
  // malformed plan.
  absl::StatusOr<std::vector<PolicyResponse>> Act(
      absl::Span<const PolicyRequest> requests) override;
  void EndEpisode(uint64_t episode_id) override;

  // The action text for one request (exposed for tests and `nbrl eval` logs).
  absl::StatusOr<std::string> ActionText(const PolicyRequest& request);

 private:
  struct EpisodeState {
    int hop = 0;                         // next hop of the plan to do
    int retries = 0;                     // retries of the current hop
    std::optional<ScriptedFault> fault;  // none for a clean episode
  };

  const model::Tokenizer* tokenizer_;
  const ScriptedPolicyOptions options_;
  std::map<uint64_t, EpisodeState> state_;
};

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_SCRIPTED_POLICY_H_
