// Evaluation of a policy on a dataset: runs every question `samples` times through
// the episode loop, `concurrency` episodes at a time, and summarises exact match and
// F1 (mean and standard error), a per-kind breakdown (metadata "kind"), pass@k, mean
// steps, ending reasons, an error taxonomy and the most common step errors (what a
// malformed action got wrong, what a failed cell raised). Every episode is kept for the
// JSONL log, readable by people (actions and observations as text).
//
// Not thread-safe; `nbrl eval` is its command-line adapter.
#ifndef NBRL_AGENT_EVALUATOR_H_
#define NBRL_AGENT_EVALUATOR_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/dataset.h"
#include "agent/episode_runner.h"

namespace nbrl::agent {

struct EvalOptions {
  EpisodeOptions episode;
  // Episodes run together (one batched policy call per step).
  int concurrency = 8;
  // Rollouts per question (pass@k uses all of them).
  int samples = 1;
  // Called after each batch with (episodes done, episodes total, running EM).
  std::function<void(int, int, double)> progress;
};

struct EvalSummary {
  int questions = 0, episodes = 0;
  double em = 0, em_stderr = 0, f1 = 0, f1_stderr = 0;
  double pass_at_k = 0;  // questions with at least one exact match among their samples
  double mean_steps = 0, mean_reward = 0;
  std::map<std::string, int> endings;        // ending reason -> episodes
  std::map<std::string, double> em_by_kind;  // metadata kind -> EM
  std::map<std::string, int> count_by_kind;
  std::map<std::string, int> errors;  // malformed actions, failed cells, timeouts, ...
  // Each distinct StepRecord::error: the episodes with it and its steps.
  struct ErrorCount {
    int episodes = 0, steps = 0;
  };
  std::map<std::string, ErrorCount> step_errors;
};

struct EvalResult {
  EvalSummary summary;
  std::vector<TrajectoryRecord> records;  // in question order, samples together
  std::vector<const Example*> examples;   // parallel to records
};

// Runs the evaluation. Errors of the policy abort it; an episode's sandbox failure
// is an ending like any other.
absl::StatusOr<EvalResult> Evaluate(const model::Tokenizer* tokenizer,
                                    const model::ChatTemplate* chat, Policy* policy,
                                    SandboxClient* sandbox,
                                    const std::vector<Example>& examples,
                                    const EvalOptions& options);

// The summary as JSON (pretty-printed) and one JSON line per episode. Its
// "step_errors" lists the kMaxListedErrors errors of the most episodes, each as
// {"error", "episodes", "steps"}, and "step_errors_not_listed" what the list leaves
// out ({"errors", "steps"}).
inline constexpr int kMaxListedErrors = 12;
std::string SummaryJson(const EvalSummary& summary);
// With a tokenizer the line also holds "context": the last action's full context
// (system prompt, task, kept steps, Notepad) decoded as text.
std::string EpisodeJsonLine(const TrajectoryRecord& record, const Example& example,
                            const model::Tokenizer* tokenizer = nullptr);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_EVALUATOR_H_
