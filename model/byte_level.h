// Byte-level helpers shared by the tokenizer and the BPE trainer: GPT-2's reversible
// map from bytes to printable code points, and strict UTF-8 scanning.
#ifndef NBRL_MODEL_BYTE_LEVEL_H_
#define NBRL_MODEL_BYTE_LEVEL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/utf8.h"

namespace nbrl::model {

// The UTF-8 text of the printable character that stands for `byte` in byte-level
// vocabularies ("Ġ" for ' ', "Ċ" for '\n', 'a' for 'a').
const std::string& ByteToUnicode(uint8_t byte);

// Maps every byte of `bytes` to its printable character (the token-string form).
std::string BytesToByteLevel(absl::string_view bytes);

// Inverse of BytesToByteLevel. Returns false (and leaves `bytes` partly written) when
// `text` holds a character outside the 256-character byte alphabet.
bool ByteLevelToBytes(absl::string_view text, std::string* bytes);

// The UTF-8 decoder the tokenizer uses (common/utf8.h).
using common::Utf8SequenceAt;

// Unicode White_Space (what \s means in Oniguruma and Rust's regex, and so in
// Hugging Face tokenizers): \t \n \v \f \r, space, U+0085, U+00A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool IsUnicodeWhitespace(char32_t cp);

// The same set written for the inside of an RE2 character class.
extern const char kRe2WhitespaceClassBody[];

}  // namespace nbrl::model

#endif  // NBRL_MODEL_BYTE_LEVEL_H_
