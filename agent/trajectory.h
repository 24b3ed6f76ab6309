// The record of one episode, as the learner needs it: the exact token ids the
// policy saw and sampled, behaviour log-probs, action and observation spans, per-step
// rewards, the final answer and why the episode ended. actor/ turns it into the
// nbrl.v1.Trajectory message field for field.
#ifndef NBRL_AGENT_TRAJECTORY_H_
#define NBRL_AGENT_TRAJECTORY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace nbrl::agent {

enum class EndingReason {
  kSubmitted,
  kMaxSteps,
  kContextLimit,
  kDeadline,
  kSandboxFailure,
  kFormatErrors,
};

const char* EndingReasonName(EndingReason reason);

// Half-open range [begin, end) of positions in TrajectoryRecord::tokens.
struct Span {
  uint32_t begin = 0;
  uint32_t end = 0;
  uint32_t size() const { return end - begin; }
};

struct StepRecord {
  // The spans whose concatenation is the context the action was sampled from.
  std::vector<Span> context;
  Span action;       // carries the loss
  Span observation;  // masked out; empty for the last step
  uint64_t policy_version = 0;
  std::map<std::string, double> rewards;
  double reward = 0;  // sum of this step's components (answer ones on the last)
  bool well_formed = false;
  bool executed_ok = false;
  std::string action_text;       // decoded, for people
  std::string observation_text;  // rendered, for people
  // Why the step failed, in one line; empty when its cell ran to the end. The
  // parser's reason for a malformed action, "Name: message" for a cell that raised,
  // "the cell timed out" or "the session was killed: ..." (CellErrorLine).
  std::string error;
  absl::Duration generate_time;
  absl::Duration execute_time;
};

struct TrajectoryRecord {
  std::string trajectory_id;
  std::string example_id;
  // The token pool: every piece of every context, each action and observation.
  std::vector<int32_t> tokens;
  // Parallel to tokens: behaviour log-probs inside action spans, 0 elsewhere.
  std::vector<float> logprobs;
  std::vector<StepRecord> steps;
  bool has_final_answer = false;
  std::string final_answer;
  EndingReason ending_reason = EndingReason::kMaxSteps;
  std::string ending_detail;  // e.g. the sandbox error
  std::string verdict;        // the task family verifier's explanation, if any
  std::map<std::string, double> final_rewards;
  double total_reward = 0;
  // Steps dropped from the context to fit the token budget, over the episode.
  int steps_trimmed = 0;
  absl::Duration wall_time;
};

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_TRAJECTORY_H_
