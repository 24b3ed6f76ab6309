// Unicode NFC normalization (the "NFC" normalizer of tokenizer.json), through ICU.
#ifndef NBRL_MODEL_NFC_H_
#define NBRL_MODEL_NFC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nbrl::model {

// NFC form of `text`, which must be valid UTF-8 (InvalidArgument otherwise).
// ASCII and text already in NFC come back unchanged without copying work beyond
// the result.
absl::StatusOr<std::string> NfcNormalize(absl::string_view text);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_NFC_H_
