// Trains a small byte-level BPE vocabulary from a text corpus and writes it as a
// Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json) that
// Tokenizer::Load, Hugging Face tokenizers and transformers.js all read. Used for
// the embedded default model.
//
// The layout follows Qwen2: NFC normalizer, the Qwen2 Split pattern, ByteLevel;
// ids 0..255 are the 256 bytes (in byte order), then one id per merge, then the
// special tokens as added tokens.
#ifndef NBRL_MODEL_BPE_TRAINER_H_
#define NBRL_MODEL_BPE_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nbrl::model {

struct BpeTrainerOptions {
  // Target size of the whole vocabulary: 256 bytes + merges + special tokens.
  // Training stops earlier when no pair occurs min_frequency times.
  int32_t vocab_size = 8192;
  // Added as special tokens after the merges, in this order.
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>",
                                             "<|im_end|>"};
  // tokenizer_config.json's eos_token and pad_token; each must be in
  // special_tokens, or empty for none.
  std::string eos_token = "<|im_end|>";
  std::string pad_token = "<|endoftext|>";
  // A pair seen fewer times than this (counting word frequencies) is not merged.
  int64_t min_frequency = 2;
};

struct TokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};

// InvalidArgument for a vocab_size below 256 + special tokens, an empty or
// duplicated special token, or an eos/pad token that is not a special token.
absl::StatusOr<TokenizerFiles> TrainBpeTokenizer(absl::string_view corpus,
                                                 const BpeTrainerOptions& options);

// Writes DIR/tokenizer.json and DIR/tokenizer_config.json (creating DIR).
absl::Status WriteTokenizerFiles(const TokenizerFiles& files, const std::string& dir);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_BPE_TRAINER_H_
