#include "common/utf8.h"

#include <cstdint>

namespace nbrl::common {
namespace {

// Length of the valid sequence at `p` (1..4), or 0 when the bytes there do not
// start one; `*bad` is then how many bytes form the maximal invalid subsequence.
size_t ValidSequence(const uint8_t* p, size_t left, size_t* bad) {
  const uint8_t b0 = p[0];
  *bad = 1;
  if (b0 < 0x80) return 1;
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  for (size_t i = 1; i < need; ++i) {
    if (i >= left) return 0;
    const uint8_t lower = i == 1 ? lo : 0x80, upper = i == 1 ? hi : 0xBF;
    if (p[i] < lower || p[i] > upper) return 0;
    *bad = i + 1;
  }
  return need;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  size_t at = 0, bad = 0;
  while (at < text.size()) {
    size_t n = ValidSequence(p + at, text.size() - at, &bad);
    if (n == 0) return false;
    at += n;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  std::string out;
  out.reserve(text.size());
  size_t at = 0, bad = 0;
  while (at < text.size()) {
    size_t n = ValidSequence(p + at, text.size() - at, &bad);
    if (n > 0) {
      out.append(text.data() + at, n);
      at += n;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD
      at += bad;
    }
  }
  return out;
}

}  // namespace nbrl::common
