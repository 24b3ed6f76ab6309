#include "common/utf8.h"

#include <cstdint>

namespace nbrl::common {
size_t Utf8SequenceAt(absl::string_view s, size_t i, char32_t* cp, size_t* invalid) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + i;
  const size_t left = s.size() - i;
  const uint8_t b0 = p[0];
  size_t bad = 1;
  auto fail = [&] {
    if (invalid != nullptr) *invalid = bad;
    return size_t{0};
  };
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t need;
  char32_t value;
  uint8_t lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2, value = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3, value = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4, value = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return fail();
  }
  for (size_t k = 1; k < need; ++k) {
    if (k >= left) return fail();
    const uint8_t lower = k == 1 ? lo : 0x80, upper = k == 1 ? hi : 0xBF;
    if (p[k] < lower || p[k] > upper) return fail();
    value = (value << 6) | (p[k] & 0x3F);
    bad = k + 1;
  }
  *cp = value;
  return need;
}

size_t FirstInvalidUtf8(absl::string_view text) {
  char32_t cp = 0;
  for (size_t at = 0; at < text.size();) {
    size_t n = Utf8SequenceAt(text, at, &cp);
    if (n == 0) return at;
    at += n;
  }
  return absl::string_view::npos;
}

bool IsValidUtf8(absl::string_view text) {
  return FirstInvalidUtf8(text) == absl::string_view::npos;
}

size_t Utf8CutPoint(absl::string_view s, size_t n) {
  if (n >= s.size()) return s.size();
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

std::string SanitizeUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  char32_t cp = 0;
  size_t at = 0, bad = 0;
  while (at < text.size()) {
    size_t n = Utf8SequenceAt(text, at, &cp, &bad);
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
