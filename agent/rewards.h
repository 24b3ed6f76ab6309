// Verifiable rewards of an episode, as configurable weighted components.
//
// Per-step components (format, execution) are earned on every step and scaled by
// 1 / number of steps, as L0 does, so an episode's step rewards sum to at most their
// weight whatever its length. Answer components (exact match, F1, has-answer, and
// the length penalty) are given on the last step. The total is the sum of all.
//
// Thread safety: pure functions.
#ifndef NBRL_AGENT_REWARDS_H_
#define NBRL_AGENT_REWARDS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/config.h"

namespace nbrl::agent {

struct RewardOptions {
  // Weight of exact match (0/1) of the final answer against the gold answers.
  double em = 1.0;
  // Weight of token F1 of the final answer.
  double f1 = 0.0;
  // Weight of having submitted any answer.
  double has_answer = 0.0;
  // Weight of well-formed actions (fraction of steps).
  double format = 0.1;
  // Weight of cells that ran without an exception or timeout (fraction of steps).
  double execution = 0.1;
  // Penalty per generated token beyond `length_budget_tokens` (0: off).
  double length_penalty = 0.0;
  int length_budget_tokens = 2048;
  // How the answer is compared: "text" (SQuAD normalisation) or "numeric"
  // (numbers within a tolerance, else text).
  std::string answer_match = "text";
};

// InvalidArgument for a negative weight or an unknown answer_match.
absl::Status ValidateRewardOptions(const RewardOptions& options);

// The weights of a run's configuration (actor.reward.*); the rest as default.
RewardOptions RewardOptionsFrom(const common::Config& config);

struct StepOutcome {
  bool well_formed = false;
  bool executed_ok = false;
  int generated_tokens = 0;
};

struct EpisodeOutcome {
  std::vector<StepOutcome> steps;
  bool has_final_answer = false;
  std::string final_answer;
  std::vector<std::string> gold_answers;
};

struct RewardBreakdown {
  // Per step: component name -> reward ("format", "execution").
  std::vector<std::map<std::string, double>> steps;
  // Answer components, given on the last step: "em", "f1", "has_answer",
  // "length_penalty" (<= 0). The raw metrics "em_raw" and "f1_raw" (unweighted,
  // 0..1) are reported alongside for monitoring and are not added to the total.
  std::map<std::string, double> final;
  double total = 0;
  // Per-step totals (step components, plus the answer components on the last
  // step); they sum to `total`.
  std::vector<double> step_totals;
};

// `verified_score`: a correctness in [0, 1] from the task family's verifier (e.g.
// the fraction of hidden unit tests passed); when given it replaces exact match
// and F1.
RewardBreakdown ComputeRewards(const RewardOptions& options,
                               const EpisodeOutcome& episode,
                               std::optional<double> verified_score = std::nullopt);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_REWARDS_H_
