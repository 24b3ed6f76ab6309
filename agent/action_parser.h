// The agent's action format: `<think>...</think><code>...</code>`.
//
// Generation stops at the end-of-code marker; FindActionEnd tells where that is
// in text generated so far, and ParseAction splits a finished action. A `</code>`
// inside a Python string literal does not end the code (a cell may print the
// marker), and both functions agree on that.
//
// Thread safety: pure functions.
#ifndef NBRL_AGENT_ACTION_PARSER_H_
#define NBRL_AGENT_ACTION_PARSER_H_

#include <string>

#include "absl/strings/string_view.h"

namespace nbrl::agent {

inline constexpr absl::string_view kThinkOpen = "<think>";
inline constexpr absl::string_view kThinkClose = "</think>";
inline constexpr absl::string_view kCodeOpen = "<code>";
inline constexpr absl::string_view kCodeClose = "</code>";

struct ParsedAction {
  bool well_formed = false;
  std::string think;  // between the think tags, trimmed
  std::string code;   // between the code tags, blank lines around it removed
  // When not well formed: what was wrong, written for the model to read
  // (e.g. "the action has no </think>").
  std::string error;
};

// Parses one action. Text after the closing </code> is ignored.
ParsedAction ParseAction(absl::string_view text);

// Offset just past the </code> that ends the action in `text`, or npos when the
// text has not reached it yet. A </code> inside a string literal of the code does
// not count; one inside a comment does.
size_t FindActionEnd(absl::string_view text);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_ACTION_PARSER_H_
