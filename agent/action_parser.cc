#include "agent/action_parser.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace nbrl::agent {
namespace {

// Scans Python source for `needle` outside string literals. Tracks '...', "...",
// '''...''', """...""" (a backslash escapes the next character, as it also does in
// raw strings for the quote) and comments (so an apostrophe in a comment opens no
// string). Single-quoted strings end at a newline, as Python's tokenizer does.
// Returns the offset of the first match outside strings, or npos.
size_t FindOutsideStrings(absl::string_view code, absl::string_view needle) {
  enum class State { kCode, kComment, kString };
  State state = State::kCode;
  char quote = 0;
  bool triple = false;
  for (size_t i = 0; i < code.size(); ++i) {
    char c = code[i];
    switch (state) {
      case State::kCode:
      case State::kComment:
        if (code.compare(i, needle.size(), needle) == 0) return i;
        if (state == State::kComment) {
          if (c == '\n') state = State::kCode;
          break;
        }
        if (c == '#') {
          state = State::kComment;
        } else if (c == '\'' || c == '"') {
          quote = c;
          triple = code.compare(i, 3, std::string(3, c)) == 0;
          state = State::kString;
          if (triple) i += 2;
        }
        break;
      case State::kString:
        if (c == '\\') {
          ++i;
        } else if (!triple && c == '\n') {
          state = State::kCode;
        } else if (c == quote) {
          if (!triple) {
            state = State::kCode;
          } else if (code.compare(i, 3, std::string(3, quote)) == 0) {
            state = State::kCode;
            i += 2;
          }
        }
        break;
    }
  }
  return absl::string_view::npos;
}

std::string TrimBlankLines(absl::string_view code) {
  // Drop whole blank lines at the start (keeping the first line's indentation) and
  // trailing whitespace at the end.
  size_t start = 0;
  while (true) {
    size_t nl = code.find('\n', start);
    if (nl == absl::string_view::npos) break;
    absl::string_view line = code.substr(start, nl - start);
    if (!absl::StripAsciiWhitespace(line).empty()) break;
    start = nl + 1;
  }
  absl::string_view rest = code.substr(start);
  return std::string(absl::StripTrailingAsciiWhitespace(rest));
}

ParsedAction Malformed(std::string error) {
  ParsedAction a;
  a.error = std::move(error);
  return a;
}

}  // namespace

size_t FindActionEnd(absl::string_view text) {
  size_t think_close = text.find(kThinkClose);
  if (think_close == absl::string_view::npos) return absl::string_view::npos;
  size_t code_open = text.find(kCodeOpen, think_close + kThinkClose.size());
  if (code_open == absl::string_view::npos) return absl::string_view::npos;
  size_t body = code_open + kCodeOpen.size();
  size_t close = FindOutsideStrings(text.substr(body), kCodeClose);
  if (close == absl::string_view::npos) return absl::string_view::npos;
  return body + close + kCodeClose.size();
}

ParsedAction ParseAction(absl::string_view text) {
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(text);
  if (rest.substr(0, kThinkOpen.size()) != kThinkOpen) {
    if (rest.find(kCodeOpen) != absl::string_view::npos) {
      return Malformed("the action must start with <think>...</think> before <code>");
    }
    return Malformed(
        "the action must be <think>your reasoning</think><code>python code</code>");
  }
  rest.remove_prefix(kThinkOpen.size());
  size_t think_close = rest.find(kThinkClose);
  if (think_close == absl::string_view::npos) {
    return Malformed("the action has no </think> closing the reasoning");
  }
  absl::string_view think = rest.substr(0, think_close);
  if (think.find(kThinkOpen) != absl::string_view::npos) {
    return Malformed("<think> blocks cannot be nested");
  }
  rest.remove_prefix(think_close + kThinkClose.size());
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (rest.substr(0, kCodeOpen.size()) != kCodeOpen) {
    return Malformed("expected <code> right after </think>");
  }
  rest.remove_prefix(kCodeOpen.size());
  size_t code_close = FindOutsideStrings(rest, kCodeClose);
  if (code_close == absl::string_view::npos) {
    return Malformed("the code block is not closed with </code>");
  }
  absl::string_view code = rest.substr(0, code_close);
  if (FindOutsideStrings(code, kCodeOpen) != absl::string_view::npos) {
    return Malformed("<code> blocks cannot be nested");
  }
  ParsedAction a;
  a.think = std::string(absl::StripAsciiWhitespace(think));
  a.code = TrimBlankLines(code);
  if (a.code.empty()) return Malformed("the <code> block is empty");
  a.well_formed = true;
  return a;
}

}  // namespace nbrl::agent
