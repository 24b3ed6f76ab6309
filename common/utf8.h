// UTF-8 checks for text that crosses a protobuf `string` field (which must be valid
// UTF-8): model output decoded from byte-level tokens can contain any bytes.
#ifndef NBRL_COMMON_UTF8_H_
#define NBRL_COMMON_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace nbrl::common {

// Length of the well-formed UTF-8 sequence that starts at s[i] (1 to 4), or 0 when
// none does (stray continuation byte, truncated sequence, overlong form, surrogate,
// code point above U+10FFFF). Stores the code point in `*cp` when it returns > 0.
// When it returns 0 and `invalid` is not null, `*invalid` is the length of the
// maximal invalid subsequence there (1 to 3: the bytes a replacement covers).
size_t Utf8SequenceAt(absl::string_view s, size_t i, char32_t* cp,
                      size_t* invalid = nullptr);

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// Offset of the first byte of `text` that does not start a well-formed sequence,
// or absl::string_view::npos when `text` is well-formed UTF-8.
size_t FirstInvalidUtf8(absl::string_view text);

// Where to cut `s` to at most `n` bytes without splitting a character: the largest
// offset <= min(n, s.size()) that is not inside a multi-byte sequence (it steps back
// over continuation bytes only, so invalid input is cut at a byte like any other).
size_t Utf8CutPoint(absl::string_view s, size_t n);

// `text` with each maximal invalid subsequence replaced by U+FFFD, as the Unicode
// standard recommends (and Python's errors="replace" does).
std::string SanitizeUtf8(absl::string_view text);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_UTF8_H_
