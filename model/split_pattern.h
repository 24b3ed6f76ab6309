// The regex split of a Hugging Face "Split" pre-tokenizer (behavior "Isolated"),
// run with RE2.
//
// RE2 has no lookaround, and the patterns of GPT-2, Qwen2 and Llama 3 all contain
// the alternative `\s+(?!\S)` ("a run of whitespace, minus its last character when
// a non-space follows"). SplitPattern cuts the pattern at that top-level alternative
// and implements its backtracking semantics by hand between two RE2 programs, so the
// leftmost-first order of the alternatives is kept exactly. Any other lookaround is
// rejected. `\s` and `\S` are rewritten to Unicode White_Space (RE2's `\s` is ASCII
// only; Oniguruma's, which Hugging Face tokenizers uses, is Unicode).
//
// Thread-safe: Split is const.
#ifndef NBRL_MODEL_SPLIT_PATTERN_H_
#define NBRL_MODEL_SPLIT_PATTERN_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "re2/re2.h"

namespace nbrl::model {

// GPT-2's pattern (what ByteLevel with use_regex=true applies).
extern const char kGpt2SplitPattern[];
// Qwen2 / Qwen2.5 / Qwen3's pattern.
extern const char kQwen2SplitPattern[];

class SplitPattern {
 public:
  // InvalidArgument naming the construct when the pattern uses lookaround other
  // than the `\s+(?!\S)` alternative, `\S` inside a class, or does not compile.
  static absl::StatusOr<std::unique_ptr<SplitPattern>> Create(
      absl::string_view pattern);

  // Appends to `pieces` the consecutive pieces of `text` (which must be valid
  // UTF-8): each match, and each stretch between matches, is one piece. The
  // pieces are views into `text` and cover it exactly.
  void Split(absl::string_view text, std::vector<absl::string_view>* pieces) const;

 private:
  SplitPattern() = default;
  // Length of the match that starts exactly at `pos`; 0 when none does.
  size_t MatchAt(absl::string_view text, size_t pos) const;

  // Constant after construction.
  std::unique_ptr<RE2> before_;  // alternatives before `\s+(?!\S)`; may be null
  bool whitespace_lookahead_ = false;
  std::unique_ptr<RE2> after_;  // alternatives after it; may be null
};

}  // namespace nbrl::model

#endif  // NBRL_MODEL_SPLIT_PATTERN_H_
