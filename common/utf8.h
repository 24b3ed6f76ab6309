// UTF-8 checks for text that crosses a protobuf `string` field (which must be valid
// UTF-8): model output decoded from byte-level tokens can contain any bytes.
#ifndef NBRL_COMMON_UTF8_H_
#define NBRL_COMMON_UTF8_H_

#include <string>

#include "absl/strings/string_view.h"

namespace nbrl::common {

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// `text` with each maximal invalid subsequence replaced by U+FFFD, as the Unicode
// standard recommends (and Python's errors="replace" does).
std::string SanitizeUtf8(absl::string_view text);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_UTF8_H_
