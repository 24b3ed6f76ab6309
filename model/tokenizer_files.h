// Parses and checks Hugging Face tokenizer files into a TokenizerSpec. Every error
// names the file and the field: "tokenizer.json: field 'model.merges[3]': ...".
#ifndef NBRL_MODEL_TOKENIZER_FILES_H_
#define NBRL_MODEL_TOKENIZER_FILES_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace nbrl::model {

// `json_text` is the content of tokenizer.json (named `json_path` in messages);
// `config_text`, when given, that of tokenizer_config.json (`config_path`).
// DataLoss for text that is not JSON (truncated, malformed) or has a field of the
// wrong type or a missing required field; InvalidArgument for a supported-looking
// but unsupported configuration (another model type, normalizer, pre-tokenizer,
// decoder or post-processor; byte fallback; BPE dropout).
absl::StatusOr<TokenizerSpec> ParseTokenizerFiles(
    const std::string& json_text, const std::string& json_path,
    const std::optional<std::string>& config_text, const std::string& config_path);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_TOKENIZER_FILES_H_
