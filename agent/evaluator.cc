#include "agent/evaluator.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace nbrl::agent {
namespace {

using nlohmann::json;

std::string KindOf(const Example& ex) {
  json meta = json::parse(ex.metadata_json, nullptr, false);
  if (!meta.is_discarded() && meta.is_object() && meta.contains("kind") &&
      meta["kind"].is_string()) {
    return meta["kind"].get<std::string>();
  }
  return "all";
}

double Get(const std::map<std::string, double>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? 0.0 : it->second;
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(const model::Tokenizer* tokenizer,
                                    const model::ChatTemplate* chat, Policy* policy,
                                    SandboxClient* sandbox,
                                    const std::vector<Example>& examples,
                                    const EvalOptions& options) {
  if (options.concurrency < 1 || options.samples < 1) {
    return absl::InvalidArgumentError("eval concurrency and samples must be >= 1");
  }
  EpisodeRunner runner(tokenizer, chat, policy, sandbox, options.episode);
  std::vector<EpisodeTask> all;
  for (size_t q = 0; q < examples.size(); ++q) {
    for (int s = 0; s < options.samples; ++s) {
      EpisodeTask t;
      t.episode_id =
          q * static_cast<uint64_t>(options.samples) + static_cast<uint64_t>(s);
      t.trajectory_id = absl::StrCat(examples[q].id, "#", s);
      t.example = examples[q];
      t.task_text = options.episode.family != nullptr
                        ? options.episode.family->TaskText(examples[q])
                        : examples[q].question;
      all.push_back(std::move(t));
    }
  }
  EvalResult result;
  double em_sum = 0;
  for (size_t start = 0; start < all.size();
       start += static_cast<size_t>(options.concurrency)) {
    std::vector<EpisodeTask> batch(
        all.begin() + start,
        all.begin() +
            std::min(all.size(), start + static_cast<size_t>(options.concurrency)));
    ASSIGN_OR_RETURN(std::vector<TrajectoryRecord> records, runner.Run(batch));
    for (size_t i = 0; i < records.size(); ++i) {
      em_sum += Get(records[i].final_rewards, "em_raw");
      result.examples.push_back(
          &examples[(start + i) / static_cast<size_t>(options.samples)]);
      result.records.push_back(std::move(records[i]));
    }
    if (options.progress) {
      options.progress(static_cast<int>(result.records.size()),
                       static_cast<int>(all.size()),
                       em_sum / static_cast<double>(result.records.size()));
    }
  }

  EvalSummary& s = result.summary;
  s.questions = static_cast<int>(examples.size());
  s.episodes = static_cast<int>(result.records.size());
  double em2 = 0, f1_sum = 0, f12 = 0, steps = 0, reward = 0;
  std::map<std::string, double> kind_em;
  std::vector<bool> solved(examples.size(), false);
  for (size_t i = 0; i < result.records.size(); ++i) {
    const TrajectoryRecord& r = result.records[i];
    double em = Get(r.final_rewards, "em_raw"), f1 = Get(r.final_rewards, "f1_raw");
    em2 += em * em;
    f1_sum += f1;
    f12 += f1 * f1;
    steps += static_cast<double>(r.steps.size());
    reward += r.total_reward;
    s.endings[EndingReasonName(r.ending_reason)]++;
    std::string kind = KindOf(*result.examples[i]);
    kind_em[kind] += em;
    s.count_by_kind[kind]++;
    if (em == 1.0) solved[i / static_cast<size_t>(options.samples)] = true;
    std::set<std::string> seen;
    for (const StepRecord& step : r.steps) {
      if (!step.error.empty()) {
        EvalSummary::ErrorCount& c = s.step_errors[step.error];
        ++c.steps;
        if (seen.insert(step.error).second) ++c.episodes;
      }
      if (!step.well_formed)
        s.errors["malformed_action"]++;
      else if (!step.executed_ok)
        s.errors["cell_failed"]++;
      if (step.observation_text.find("timed out") != std::string::npos)
        s.errors["cell_timeout"]++;
    }
    if (r.ending_reason == EndingReason::kSandboxFailure) s.errors["sandbox_failure"]++;
    if (!r.has_final_answer) s.errors["no_answer"]++;
  }
  const double n = std::max(1, s.episodes);
  s.em = em_sum / n;
  s.f1 = f1_sum / n;
  auto stderr_of = [n](double mean, double sq) {
    return n > 1 ? std::sqrt(std::max(0.0, sq / n - mean * mean) / (n - 1)) : 0.0;
  };
  s.em_stderr = stderr_of(s.em, em2);
  s.f1_stderr = stderr_of(s.f1, f12);
  s.mean_steps = steps / n;
  s.mean_reward = reward / n;
  for (const auto& [kind, sum] : kind_em)
    s.em_by_kind[kind] = sum / s.count_by_kind[kind];
  int solved_count = 0;
  for (bool b : solved) solved_count += b;
  s.pass_at_k =
      examples.empty() ? 0 : static_cast<double>(solved_count) / examples.size();
  return result;
}

std::string SummaryJson(const EvalSummary& s) {
  json j;
  j["questions"] = s.questions;
  j["episodes"] = s.episodes;
  j["em"] = {{"mean", s.em}, {"stderr", s.em_stderr}};
  j["f1"] = {{"mean", s.f1}, {"stderr", s.f1_stderr}};
  j["pass_at_k"] = s.pass_at_k;
  j["mean_steps"] = s.mean_steps;
  j["mean_reward"] = s.mean_reward;
  j["endings"] = s.endings;
  j["em_by_kind"] = s.em_by_kind;
  j["count_by_kind"] = s.count_by_kind;
  j["errors"] = s.errors;
  // Most episodes first; ties by steps, then by text.
  std::vector<std::pair<std::string, EvalSummary::ErrorCount>> by_count(
      s.step_errors.begin(), s.step_errors.end());
  std::stable_sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) {
    if (a.second.episodes != b.second.episodes)
      return a.second.episodes > b.second.episodes;
    return a.second.steps > b.second.steps;
  });
  j["step_errors"] = json::array();
  int more_errors = 0, more_steps = 0;
  for (size_t i = 0; i < by_count.size(); ++i) {
    const auto& [error, c] = by_count[i];
    if (i < static_cast<size_t>(kMaxListedErrors)) {
      j["step_errors"].push_back(
          {{"error", error}, {"episodes", c.episodes}, {"steps", c.steps}});
    } else {
      ++more_errors;
      more_steps += c.steps;
    }
  }
  j["step_errors_not_listed"] = {{"errors", more_errors}, {"steps", more_steps}};
  // Errors quote the sandbox's text: never let a stray byte abort the summary.
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string EpisodeJsonLine(const TrajectoryRecord& r, const Example& ex,
                            const model::Tokenizer* tokenizer) {
  json j;
  j["trajectory_id"] = r.trajectory_id;
  j["question_id"] = ex.id;
  j["question"] = ex.question;
  j["answers"] = ex.answers;
  j["final_answer"] = r.has_final_answer ? json(r.final_answer) : json(nullptr);
  j["em"] = Get(r.final_rewards, "em_raw");
  j["f1"] = Get(r.final_rewards, "f1_raw");
  j["reward"] = r.total_reward;
  j["ending"] = EndingReasonName(r.ending_reason);
  if (!r.ending_detail.empty()) j["ending_detail"] = r.ending_detail;
  if (!r.verdict.empty()) j["verdict"] = r.verdict;
  j["steps"] = json::array();
  for (const StepRecord& s : r.steps) {
    j["steps"].push_back({{"action", s.action_text},
                          {"action_tokens", s.action.size()},
                          {"observation", s.observation_text},
                          {"well_formed", s.well_formed},
                          {"executed_ok", s.executed_ok},
                          {"policy_version", s.policy_version}});
    if (!s.error.empty()) j["steps"].back()["error"] = s.error;
  }
  j["context_tokens"] = r.tokens.size();
  if (tokenizer != nullptr && !r.steps.empty()) {
    std::vector<int32_t> ids;
    for (const Span& sp : r.steps.back().context) {
      ids.insert(ids.end(), r.tokens.begin() + sp.begin, r.tokens.begin() + sp.end);
    }
    absl::StatusOr<std::string> text = tokenizer->Decode(ids);
    if (text.ok()) j["context"] = *text;
  }
  j["wall_seconds"] = absl::ToDoubleSeconds(r.wall_time);
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace nbrl::agent
