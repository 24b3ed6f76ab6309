#include "model/nfc.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

#include "absl/strings/str_cat.h"
#include "model/byte_level.h"

namespace nbrl::model {

absl::StatusOr<std::string> NfcNormalize(absl::string_view text) {
  bool ascii = true;
  char32_t cp = 0;
  for (size_t i = 0; i < text.size();) {
    size_t len = Utf8SequenceAt(text, i, &cp);
    if (len == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("NFC normalization needs valid UTF-8; byte ", i, " is not"));
    }
    ascii = ascii && len == 1;
    i += len;
  }
  if (ascii) return std::string(text);
  UErrorCode error = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(error);
  if (U_FAILURE(error)) {
    return absl::InternalError(
        absl::StrCat("ICU has no NFC normalizer: ", u_errorName(error)));
  }
  std::string out;
  icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(text.size()));
  nfc->normalizeUTF8(/*options=*/0,
                     icu::StringPiece(text.data(), static_cast<int32_t>(text.size())),
                     sink, /*edits=*/nullptr, error);
  if (U_FAILURE(error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NFC normalization failed: ", u_errorName(error)));
  }
  return out;
}

}  // namespace nbrl::model
