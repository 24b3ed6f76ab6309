// A task family: how a kind of task is worded, which tools its sandbox sessions
// get, and how a final answer is verified. Three ship (task_families.cc):
//
//   qa_search  questions answered with web_search/read_page; exact match and F1
//   math       numeric answers computed in Python; no tools; a numeric tolerance
//   code       the agent writes a function; the score is the fraction of hidden unit
//              tests it passes, run in a fresh sandbox session it never saw
//
// task_family_minimal.cc is a worked, minimal family whose comments show how to
// add one.
#ifndef NBRL_AGENT_TASK_FAMILY_H_
#define NBRL_AGENT_TASK_FAMILY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/dataset.h"
#include "agent/prompts.h"
#include "agent/sandbox_client.h"

namespace nbrl::agent {

struct Verdict {
  // Correctness in [0, 1]: it becomes the episode's "em_raw" and drives the answer
  // reward.
  double score = 0;
  // Why, for logs ("3 of 4 tests passed").
  std::string detail;
};

class TaskFamily {
 public:
  virtual ~TaskFamily() = default;
  // Short stable name, e.g. "qa_search" (the trajectory group's task_family).
  virtual std::string name() const = 0;
  // Tools its sessions get, for the system prompt and the sandbox ({} for none).
  virtual std::vector<ToolDescription> tools() const = 0;
  // The tool names to request from the sandbox (empty: no tools).
  virtual std::vector<std::string> tool_names() const = 0;
  // The task as the model reads it.
  virtual std::string TaskText(const Example& example) const = 0;
  // Scores the final answer (`has_answer` false: none was submitted). `sandbox` is
  // for verifiers that run code; a non-OK status is the verifier's own failure
  // (the sandbox is down), not a wrong answer.
  virtual absl::StatusOr<Verdict> Verify(const Example& example, bool has_answer,
                                         const std::string& answer,
                                         SandboxClient* sandbox) const = 0;
};

// "qa_search", "math", "code", "minimal". InvalidArgument for another name.
absl::StatusOr<std::unique_ptr<TaskFamily>> MakeTaskFamily(const std::string& name);
std::unique_ptr<TaskFamily> MakeMinimalTaskFamily();

// Arithmetic word problems for the math family, from a seed (answers are integers
// or have two decimals; solving them by hand is error-prone, in Python easy).
std::vector<Example> MakeMathProblems(uint64_t seed, int count);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_TASK_FAMILY_H_
