#include "agent/rewards.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "agent/answer_match.h"

namespace nbrl::agent {

absl::Status ValidateRewardOptions(const RewardOptions& o) {
  for (auto [name, w] : {std::pair<const char*, double>{"em", o.em},
                         {"f1", o.f1},
                         {"has_answer", o.has_answer},
                         {"format", o.format},
                         {"execution", o.execution},
                         {"length_penalty", o.length_penalty}}) {
    if (!(w >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("reward weight ", name, " must be >= 0, got ", w));
    }
  }
  if (o.answer_match != "text" && o.answer_match != "numeric") {
    return absl::InvalidArgumentError(absl::StrCat(
        "reward answer_match '", o.answer_match, "' is not one of: text, numeric"));
  }
  if (o.length_budget_tokens < 0) {
    return absl::InvalidArgumentError("reward length_budget_tokens must be >= 0");
  }
  return absl::OkStatus();
}

RewardOptions RewardOptionsFrom(const common::Config& c) {
  RewardOptions o;
  o.em = c.GetDouble("actor.reward.em");
  o.f1 = c.GetDouble("actor.reward.f1");
  o.has_answer = c.GetDouble("actor.reward.has_answer");
  o.format = c.GetDouble("actor.reward.format");
  o.execution = c.GetDouble("actor.reward.execution");
  return o;
}

RewardBreakdown ComputeRewards(const RewardOptions& o, const EpisodeOutcome& e,
                               std::optional<double> verified_score) {
  RewardBreakdown r;
  const size_t n = e.steps.size();
  int tokens = 0;
  for (const StepOutcome& s : e.steps) {
    std::map<std::string, double> step;
    step["format"] = s.well_formed ? o.format / n : 0.0;
    step["execution"] = s.executed_ok ? o.execution / n : 0.0;
    r.steps.push_back(step);
    r.step_totals.push_back(step["format"] + step["execution"]);
    tokens += s.generated_tokens;
  }
  double em = 0, f1 = 0;
  if (verified_score.has_value()) {
    em = f1 = std::clamp(*verified_score, 0.0, 1.0);
  } else if (e.has_final_answer) {
    em = o.answer_match == "numeric" ? NumericMatch(e.final_answer, e.gold_answers)
                                     : ExactMatch(e.final_answer, e.gold_answers);
    f1 = std::max(em, F1Score(e.final_answer, e.gold_answers));
  }
  r.final["em_raw"] = em;
  r.final["f1_raw"] = f1;
  r.final["em"] = o.em * em;
  r.final["f1"] = o.f1 * f1;
  r.final["has_answer"] = e.has_final_answer ? o.has_answer : 0.0;
  r.final["length_penalty"] =
      -o.length_penalty * std::max(0, tokens - o.length_budget_tokens);
  double answer =
      r.final["em"] + r.final["f1"] + r.final["has_answer"] + r.final["length_penalty"];
  if (r.step_totals.empty()) r.step_totals.push_back(0.0);  // an episode with no step
  r.step_totals.back() += answer;
  for (double t : r.step_totals) r.total += t;
  return r;
}

}  // namespace nbrl::agent
