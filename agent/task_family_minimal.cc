// A worked, minimal task family. To add a family:
//
//   1. Subclass TaskFamily (task_family.h) in a file of its own.
//   2. name(): a short, stable name; it labels trajectory groups and metrics.
//   3. tools() and tool_names(): what the agent's sandbox session can call. The
//      descriptions go into the system prompt; the names are requested from the
//      sandbox, which serves them host-side. Return {} for a family without tools.
//   4. TaskText(): the wording the model reads. Keep the answer format explicit:
//      the verifier compares what submit_final_answer(...) receives.
//   5. Verify(): score the final answer in [0, 1]. Pure functions of the example are
//      best; a family that must run code gets the sandbox client and must use a
//      fresh session (never the agent's), so the agent cannot see or alter what
//      checks it.
//   6. Register the name in MakeTaskFamily (task_families.cc) and add a test.
//
// This one asks the question as written and checks exact match, with no tools.
#include "agent/answer_match.h"
#include "agent/task_family.h"

namespace nbrl::agent {
namespace {

class MinimalFamily : public TaskFamily {
 public:
  std::string name() const override { return "minimal"; }
  std::vector<ToolDescription> tools() const override { return {}; }
  std::vector<std::string> tool_names() const override { return {}; }

  std::string TaskText(const Example& example) const override {
    return example.question +
           "\nAnswer with submit_final_answer(answer), a few words at most.";
  }

  absl::StatusOr<Verdict> Verify(const Example& example, bool has_answer,
                                 const std::string& answer,
                                 SandboxClient* sandbox) const override {
    (void)sandbox;  // nothing to run
    Verdict v;
    if (!has_answer) {
      v.detail = "no answer";
      return v;
    }
    v.score = ExactMatch(answer, example.answers);
    v.detail = v.score == 1.0 ? "exact match" : "no match";
    return v;
  }
};

}  // namespace

std::unique_ptr<TaskFamily> MakeMinimalTaskFamily() {
  return std::make_unique<MinimalFamily>();
}

}  // namespace nbrl::agent
