// Fuzzes the agent's action parser (agent/action_parser.h) on arbitrary model output.
//
// Besides not crashing, the two functions must agree, as the actor relies on it:
// generation stops at FindActionEnd, on text that grows token by token, and the
// action is then parsed from what was generated.
//  - A well-formed action has an end, and parsing only the text up to it gives the
//    same action (text after </code> is ignored).
//  - The end is found at the first prefix that contains it and never earlier: every
//    shorter prefix has none, every longer one the same.
//  - A malformed action says why; a well-formed one has code.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "agent/action_parser.h"

namespace {

using nbrl::agent::FindActionEnd;
using nbrl::agent::ParseAction;
using nbrl::agent::ParsedAction;

constexpr size_t kNone = absl::string_view::npos;

void Fail(const char* what, absl::string_view text) {
  std::fprintf(stderr, "action_parser_fuzzer: %s\n--- text ---\n%.*s\n", what,
               static_cast<int>(text.size()), text.data());
  std::abort();
}

bool Same(const ParsedAction& a, const ParsedAction& b) {
  return a.well_formed == b.well_formed && a.think == b.think && a.code == b.code &&
         a.error == b.error;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const ParsedAction action = ParseAction(text);
  const size_t end = FindActionEnd(text);

  if (action.well_formed) {
    if (action.code.empty()) Fail("a well-formed action without code", text);
    if (end == kNone) Fail("a well-formed action without an end", text);
  } else if (action.error.empty()) {
    Fail("a malformed action without an error", text);
  }
  if (end != kNone) {
    if (end > text.size()) Fail("the end lies beyond the text", text);
    if (action.well_formed && !Same(action, ParseAction(text.substr(0, end)))) {
      Fail("the text after </code> changed the parse", text);
    }
  }

  // Prefixes: all of them for short texts, a spread of them otherwise (quadratic).
  const size_t step = size <= 512 ? 1 : size / 256;
  for (size_t k = 0; k <= size; k += step) {
    const size_t got = FindActionEnd(text.substr(0, k));
    const size_t want = end != kNone && k >= end ? end : kNone;
    if (got != want) Fail("a prefix disagrees about the end of the action", text);
  }
  return 0;
}
