// Builds the context of each action of one episode, and keeps the episode's token
// pool.
//
// Layout (ChatML), the Notepad last, nearest to generation:
//
//   P    <|im_start|>system ...<|im_end|> <|im_start|>user TASK<|im_end|>
//   per kept earlier step j:
//   H_j  <|im_start|>assistant\n
//   A_j  <think>...</think><code>...</code>          (sampled: carries the loss)
//   O_j  <|im_end|>\n<|im_start|>user <output>...</output><|im_end|>\n   (masked)
//   N_k  <|im_start|>user NOTEPAD<|im_end|>\n<|im_start|>assistant\n
//
// Every piece is appended to the pool once; a context is a list of spans of the
// pool. When a context would not fit `context_tokens` (with room for the action),
// the oldest steps are dropped whole; the system prompt, the task and the Notepad
// always stay, and the Notepad says how many steps were dropped.
//
// Not thread-safe: one builder per episode.
#ifndef NBRL_AGENT_CONTEXT_BUILDER_H_
#define NBRL_AGENT_CONTEXT_BUILDER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/sandbox_client.h"
#include "agent/trajectory.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace nbrl::agent {

struct ContextOptions {
  // Most tokens in a context, including the action to be generated.
  int context_tokens = 4096;
  // Tokens reserved for the action.
  int max_action_tokens = 512;
  // Budget of one observation's text in characters; longer output is cut with a
  // marker.
  int observation_chars = 2000;
  // Also render the session's variables under the Notepad.
  bool show_variables = false;
};

class ContextBuilder {
 public:
  // `tokenizer` and `chat` are not owned and must outlive the builder.
  // InvalidArgument for budgets that cannot hold an action.
  static absl::StatusOr<std::unique_ptr<ContextBuilder>> Create(
      const model::Tokenizer* tokenizer, const model::ChatTemplate* chat,
      const ContextOptions& options, const std::string& system_prompt,
      const std::string& task);

  // The context for the next action, with the Notepad rendered from `notepad`
  // (and `variables` when configured) and `status_line` (e.g. "Step 3 of 8.")
  // under it. Sets *spans to the pool spans that make it up. ResourceExhausted when
  // even the system prompt, the task and the Notepad do not fit.
  absl::StatusOr<std::vector<int32_t>> NextContext(
      const NotepadState& notepad, const std::vector<VariableSummary>& variables,
      const std::string& status_line, std::vector<Span>* spans);

  // Records the sampled action of the step whose context NextContext returned.
  Span AddAction(const std::vector<int32_t>& tokens,
                 const std::vector<float>& logprobs);
  // Records the observation after the last action.
  Span AddObservation(const std::string& observation_text);

  // Steps dropped so far.
  int steps_dropped() const { return dropped_; }
  std::vector<int32_t>& tokens() { return tokens_; }
  std::vector<float>& logprobs() { return logprobs_; }

 private:
  ContextBuilder() = default;
  Span Append(const std::vector<int32_t>& ids);

  // Constant after construction.
  const model::Tokenizer* tokenizer_ = nullptr;
  const model::ChatTemplate* chat_ = nullptr;
  ContextOptions options_;
  Span prefix_;
  std::vector<int32_t> header_ids_;  // "<|im_start|>assistant\n"

  struct StepPieces {
    Span header, action, observation;
    uint32_t size() const { return header.size() + action.size() + observation.size(); }
  };
  std::vector<int32_t> tokens_;
  std::vector<float> logprobs_;
  std::vector<StepPieces> steps_;  // every step so far, kept or dropped
  int dropped_ = 0;                // steps_[0, dropped_) are out of the context
  bool pending_action_ = false;    // NextContext called, AddAction not yet
};

// The text of a cell's observation, inside <output>...</output>, cut to
// `budget_chars` with a visible marker.
std::string RenderObservation(const CellResult& result, int budget_chars,
                              absl::Duration timeout);
// The observation for an action that was not executed.
std::string RenderFormatError(const std::string& error);
// The Notepad as the model reads it.
std::string RenderNotepad(const NotepadState& notepad,
                          const std::vector<VariableSummary>& variables,
                          bool show_variables, int steps_dropped,
                          const std::string& status_line);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_CONTEXT_BUILDER_H_
