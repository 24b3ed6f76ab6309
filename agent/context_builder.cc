#include "agent/context_builder.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "glog/logging.h"

namespace nbrl::agent {
namespace {

// Cuts `text` to `budget` bytes (at a UTF-8 boundary) with a marker saying how much
// was left out.
std::string Cut(const std::string& text, int budget) {
  if (budget < 0 || static_cast<int>(text.size()) <= budget) return text;
  const size_t end = common::Utf8CutPoint(text, static_cast<size_t>(budget));
  return absl::StrCat(text.substr(0, end), "\n[... ", text.size() - end,
                      " more characters cut ...]");
}

}  // namespace

std::string RenderObservation(const CellResult& r, int budget_chars,
                              absl::Duration timeout) {
  auto line_break = [](std::string* s) {
    if (!s->empty() && s->back() != '\n') s->push_back('\n');
  };
  // What the cell printed is cut to the budget; what happened to it (the error,
  // a timeout, a restart, the answer) is always shown after it.
  std::string body = r.stdout_text;
  if (r.stdout_truncated) absl::StrAppend(&body, "\n[stdout cut by the sandbox]\n");
  if (!r.stderr_text.empty()) {
    line_break(&body);
    absl::StrAppend(&body, "[stderr]\n", r.stderr_text);
  }
  if (!r.result.empty()) {
    line_break(&body);
    absl::StrAppend(&body, r.result);
  }
  std::string out = Cut(body, budget_chars);
  if (r.state_lost) {
    out = absl::StrCat(
        "[The session was restarted: variables from earlier cells are lost.]\n", out);
  }
  if (r.has_error) {
    line_break(&out);
    absl::StrAppend(&out, Cut(r.traceback.empty()
                                  ? absl::StrCat(r.error_name, ": ", r.error_message)
                                  : r.traceback,
                              budget_chars / 2));
  }
  if (r.end == CellEnd::kTimeout) {
    line_break(&out);
    absl::StrAppend(&out, "[The cell timed out after ", absl::FormatDuration(timeout),
                    " and was interrupted; the session kept its variables.]");
  } else if (r.end == CellEnd::kSessionKilled) {
    line_break(&out);
    absl::StrAppend(&out, "[The cell was stopped (",
                    r.kill_reason.empty() ? "limit" : r.kill_reason,
                    ") and the session restarted: its variables are lost.]");
  }
  if (r.has_final_answer) {
    line_break(&out);
    absl::StrAppend(&out, "[Final answer submitted: ", r.final_answer, "]");
  }
  if (out.empty()) out = "[no output]";
  return absl::StrCat("<output>\n", out, "\n</output>");
}

std::string RenderFormatError(const std::string& error) {
  return absl::StrCat("<output>\n[Not executed: ", error,
                      ". Write <think>your reasoning</think> and then "
                      "<code>python code</code>.]\n</output>");
}

std::string RenderNotepad(const NotepadState& n,
                          const std::vector<VariableSummary>& variables,
                          bool show_variables, int steps_dropped,
                          const std::string& status_line) {
  std::string out = "<notepad>\n";
  if (n.todos.empty() && n.facts.empty() && n.draft.empty()) {
    absl::StrAppend(&out,
                    "(empty: use notepad.add_todo, notepad.add_facts, "
                    "notepad.write_draft)\n");
  }
  if (!n.todos.empty()) {
    absl::StrAppend(&out, "Todo:\n");
    for (const TodoItem& t : n.todos) {
      const char* mark = t.status == "done"          ? "[x]"
                         : t.status == "in_progress" ? "[~]"
                         : t.status == "dropped"     ? "[-]"
                                                     : "[ ]";
      absl::StrAppend(&out, "  ", mark, " ", t.id, ". ", t.text, "\n");
    }
  }
  if (!n.facts.empty()) {
    absl::StrAppend(&out, "Facts:\n");
    for (const std::string& f : n.facts) absl::StrAppend(&out, "  - ", f, "\n");
  }
  if (!n.draft.empty()) absl::StrAppend(&out, "Draft answer: ", n.draft, "\n");
  if (show_variables && !variables.empty()) {
    absl::StrAppend(&out, "Variables:\n");
    for (const VariableSummary& v : variables) {
      absl::StrAppend(&out, "  ", v.name, " (", v.type, v.size.empty() ? "" : ", ",
                      v.size, "): ", v.preview, "\n");
    }
  }
  absl::StrAppend(&out, "</notepad>\n");
  if (steps_dropped > 0) {
    absl::StrAppend(&out, "(The first ", steps_dropped,
                    " step(s) were dropped from the context to fit its budget; what "
                    "you noted above and your variables remain.)\n");
  }
  absl::StrAppend(&out, status_line);
  return out;
}

absl::StatusOr<std::unique_ptr<ContextBuilder>> ContextBuilder::Create(
    const model::Tokenizer* tokenizer, const model::ChatTemplate* chat,
    const ContextOptions& options, const std::string& system_prompt,
    const std::string& task) {
  if (options.max_action_tokens < 1 ||
      options.context_tokens <= options.max_action_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("context budget ", options.context_tokens,
                     " tokens cannot hold an action of up to ",
                     options.max_action_tokens, " tokens"));
  }
  std::unique_ptr<ContextBuilder> b(new ContextBuilder());
  b->tokenizer_ = tokenizer;
  b->chat_ = chat;
  b->options_ = options;
  ASSIGN_OR_RETURN(std::vector<int32_t> prefix,
                   chat->Render({{"system", system_prompt}, {"user", task}},
                                /*add_generation_prompt=*/false));
  b->prefix_ = b->Append(prefix);
  ASSIGN_OR_RETURN(b->header_ids_, chat->Render({}, /*add_generation_prompt=*/true));
  return b;
}

Span ContextBuilder::Append(const std::vector<int32_t>& ids) {
  Span s;
  s.begin = static_cast<uint32_t>(tokens_.size());
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  logprobs_.resize(tokens_.size(), 0.0f);
  s.end = static_cast<uint32_t>(tokens_.size());
  return s;
}

absl::StatusOr<std::vector<int32_t>> ContextBuilder::NextContext(
    const NotepadState& notepad, const std::vector<VariableSummary>& variables,
    const std::string& status_line, std::vector<Span>* spans) {
  // The Notepad text depends on how many steps are dropped, which depends on its
  // size: render, drop what does not fit, and render again until stable.
  std::vector<int32_t> notepad_ids;
  for (int round = 0;; ++round) {
    std::string text = RenderNotepad(notepad, variables, options_.show_variables,
                                     dropped_, status_line);
    ASSIGN_OR_RETURN(notepad_ids,
                     chat_->Render({{"user", text}}, /*add_generation_prompt=*/true));
    size_t fixed = prefix_.size() + notepad_ids.size() +
                   static_cast<size_t>(options_.max_action_tokens);
    size_t history = 0;
    for (size_t j = static_cast<size_t>(dropped_); j < steps_.size(); ++j) {
      history += steps_[j].size();
    }
    if (fixed > static_cast<size_t>(options_.context_tokens)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the system prompt, task and Notepad take ",
                       fixed - options_.max_action_tokens, " tokens; with ",
                       options_.max_action_tokens, " for the action they exceed the ",
                       options_.context_tokens, "-token context"));
    }
    int before = dropped_;
    while (fixed + history > static_cast<size_t>(options_.context_tokens)) {
      history -= steps_[static_cast<size_t>(dropped_)].size();
      ++dropped_;
    }
    if (dropped_ == before || round >= 3) break;
  }
  spans->clear();
  spans->push_back(prefix_);
  for (size_t j = static_cast<size_t>(dropped_); j < steps_.size(); ++j) {
    spans->push_back(steps_[j].header);
    spans->push_back(steps_[j].action);
    if (steps_[j].observation.size() > 0) spans->push_back(steps_[j].observation);
  }
  spans->push_back(Append(notepad_ids));
  std::vector<int32_t> context;
  for (const Span& s : *spans) {
    context.insert(context.end(), tokens_.begin() + s.begin, tokens_.begin() + s.end);
  }
  pending_action_ = true;
  return context;
}

Span ContextBuilder::AddAction(const std::vector<int32_t>& tokens,
                               const std::vector<float>& logprobs) {
  StepPieces step;
  step.header = Append(header_ids_);
  step.action = Append(tokens);
  for (size_t i = 0; i < logprobs.size() && i < tokens.size(); ++i) {
    logprobs_[step.action.begin + i] = logprobs[i];
  }
  step.observation = Span{step.action.end, step.action.end};
  steps_.push_back(step);
  pending_action_ = false;
  return step.action;
}

Span ContextBuilder::AddObservation(const std::string& observation_text) {
  std::vector<int32_t> ids;
  // Close the assistant turn, unless the policy already did (it stopped at EOS).
  const StepPieces& last = steps_.back();
  if (last.action.size() == 0 || tokens_[last.action.end - 1] != chat_->end_id()) {
    ids.push_back(chat_->end_id());
  }
  std::vector<int32_t> nl = tokenizer_->Encode("\n");
  ids.insert(ids.end(), nl.begin(), nl.end());
  absl::StatusOr<std::vector<int32_t>> message =
      chat_->Render({{"user", observation_text}}, /*add_generation_prompt=*/false);
  // Rendering a fixed role cannot fail; a failure here is our bug.
  CHECK(message.ok()) << message.status();
  ids.insert(ids.end(), message->begin(), message->end());
  steps_.back().observation = Append(ids);
  return steps_.back().observation;
}

}  // namespace nbrl::agent
