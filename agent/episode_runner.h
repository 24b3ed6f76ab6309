// The NB-Agent loop: runs a batch of episodes together against a policy and a
// sandbox. Each step makes one batched policy call over the episodes still running,
// then runs their cells concurrently, each in its own sandbox session.
//
// An episode ends when its code submits an answer, at max_steps, when its context
// no longer fits, at its deadline, when its sandbox fails, or after too many
// malformed actions in a row; every trajectory records which. A malformed action is
// not executed: the observation tells the model what was wrong, and the format
// reward records it.
//
// Thread safety: Run may be called from one thread at a time.
#ifndef NBRL_AGENT_EPISODE_RUNNER_H_
#define NBRL_AGENT_EPISODE_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/context_builder.h"
#include "agent/dataset.h"
#include "agent/policy.h"
#include "agent/rewards.h"
#include "agent/sandbox_client.h"
#include "agent/task_family.h"
#include "agent/trajectory.h"

namespace nbrl::agent {

struct EpisodeOptions {
  ContextOptions context;
  // Most actions per episode.
  int max_steps = 8;
  // Wall-clock limit of one cell.
  absl::Duration cell_timeout = absl::Seconds(10);
  // Wall-clock limit of a whole episode.
  absl::Duration episode_deadline = absl::Minutes(5);
  // End the episode after this many malformed actions in a row.
  int max_consecutive_format_errors = 3;
  RewardOptions rewards;
  // The system prompt (see prompts.h).
  std::string system_prompt;
  // Tools the sandbox session may call; empty: the sandbox's default set.
  std::vector<std::string> tools;
  // The task family (not owned). When set, it chooses the session's tools and its
  // verifier scores the final answer (replacing exact match and F1).
  const TaskFamily* family = nullptr;
};

struct EpisodeTask {
  // Unique among episodes running at once; keys the policy's per-episode state.
  uint64_t episode_id = 0;
  std::string trajectory_id;
  Example example;
  // The task as the model reads it (the question with the family's wording).
  std::string task_text;
};

class EpisodeRunner {
 public:
  // Nothing is owned; everything must outlive the runner.
  EpisodeRunner(const model::Tokenizer* tokenizer, const model::ChatTemplate* chat,
                Policy* policy, SandboxClient* sandbox, EpisodeOptions options);

  // Runs the episodes and returns one trajectory per task, in order. A failure of
  // one episode's sandbox ends that episode only; a policy failure fails the call.
  // InvalidArgument for bad options.
  absl::StatusOr<std::vector<TrajectoryRecord>> Run(
      const std::vector<EpisodeTask>& tasks);

 private:
  const model::Tokenizer* tokenizer_;
  const model::ChatTemplate* chat_;
  Policy* policy_;
  SandboxClient* sandbox_;
  const EpisodeOptions options_;
};

// A failed cell's error in one line (StepRecord::error): "Name: first line of the
// message" for one that raised, "the cell timed out", "the session was killed:
// reason"; at most about 120 bytes. Empty for a cell that ran to the end.
std::string CellErrorLine(const CellResult& cell);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_EPISODE_RUNNER_H_
