// A byte-level BPE tokenizer read from a Hugging Face tokenizer folder
// (tokenizer.json, and tokenizer_config.json when present): Qwen2 / Qwen2.5 /
// Qwen3, GPT-2 and models laid out like them. docs/tokenizer.md lists what is
// supported; anything else is rejected at load with an error naming the file and
// the field.
//
//   ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load("/models/qwen2.5-0.5b"));
//   std::vector<int32_t> ids = tokenizer->Encode("print(1 + 1)");
//   ASSIGN_OR_RETURN(std::string text, tokenizer->Decode(ids));
//
// Encoding is defined for any bytes: each maximal stretch of well-formed UTF-8 is
// normalized (NFC, when configured), split and merged exactly as Hugging Face does;
// each maximal run of bytes that are not well-formed UTF-8 is one pre-token of its
// own, encoded byte by byte through the merges. So Decode(Encode(x)) == x for every
// x (after NFC, where the tokenizer normalizes).
//
// Thread-safe: every method is const; the BPE cache is internally locked.
#ifndef NBRL_MODEL_TOKENIZER_H_
#define NBRL_MODEL_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace nbrl::model {

class BpeModel;
class SplitPattern;

// An entry of tokenizer.json's "added_tokens".
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;  // skipped by Decode(..., skip_special_tokens=true)
  bool lstrip = false;   // when matched, whitespace before it is dropped
  bool rstrip = false;   // when matched, whitespace after it is dropped
};

// What the two files say, parsed and checked (tokenizer_files.cc builds it).
struct TokenizerSpec {
  absl::flat_hash_map<std::string, int32_t> vocab;  // byte-level token -> id
  std::vector<std::pair<std::string, std::string>> merges;
  bool ignore_merges = false;
  std::vector<AddedToken> added_tokens;
  bool nfc = false;                  // normalizer NFC
  std::optional<std::string> split;  // Split pre-tokenizer pattern, if any
  // From tokenizer_config.json; empty when absent.
  std::string bos_token, eos_token, pad_token;
  std::string chat_template;
  std::string source;         // the tokenizer.json path, for messages
  std::string config_source;  // the tokenizer_config.json path, for messages
};

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and, when it exists, DIR/tokenizer_config.json.
  // NotFound for a missing tokenizer.json; DataLoss naming file and field for a
  // malformed or truncated file; InvalidArgument for a well-formed configuration
  // that nbrl does not support.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir);
  // The same from explicit paths; `config_path` may be empty.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFiles(
      const std::string& tokenizer_json_path, const std::string& config_path);
  // From parsed files (see ParseTokenizerFiles in tokenizer_files.h).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerSpec spec);
  ~Tokenizer();

  // Ids of `text` as plain text: added and special tokens written in it are NOT
  // recognised ("<|im_end|>" becomes ordinary tokens). No BOS/EOS is added.
  std::vector<int32_t> Encode(absl::string_view text) const;
  // Ids of `text` where the added tokens written in it (leftmost, longest first)
  // become their ids; the text between them is encoded as by Encode.
  std::vector<int32_t> EncodeWithSpecialTokens(absl::string_view text) const;
  // The exact bytes the ids stand for (no replacement of invalid UTF-8).
  // InvalidArgument for an id outside the vocabulary.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;

  // Id of a token string (byte-level form for vocabulary entries, e.g. "Ġthe";
  // the content for added tokens, e.g. "<|im_end|>"); nullopt when unknown.
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // Token string of an id; InvalidArgument when out of range.
  absl::StatusOr<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;

  // One more than the largest id (vocabulary and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  // -1 when tokenizer_config.json names none.
  int32_t eos_id() const { return eos_id_; }
  int32_t bos_id() const { return bos_id_; }
  int32_t pad_id() const { return pad_id_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  // The Jinja chat template of tokenizer_config.json (informational; ChatTemplate
  // renders ChatML natively).
  const std::string& chat_template_source() const { return chat_template_; }

 private:
  Tokenizer() = default;
  void EncodeSegment(absl::string_view text, std::vector<int32_t>* ids) const;
  void EncodeValidUtf8(absl::string_view text, std::vector<int32_t>* ids) const;

  // Constant after construction.
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<SplitPattern> split_;  // null: a segment is one pre-token
  bool nfc_ = false;
  std::vector<AddedToken> added_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;  // token strings
  std::vector<std::string> id_bytes_;     // what each id decodes to
  std::vector<bool> special_;
  std::unique_ptr<re2::RE2> added_matcher_;  // null when there are no added tokens
  absl::flat_hash_map<std::string, size_t> added_index_;  // content -> added_ index
  int32_t eos_id_ = -1, bos_id_ = -1, pad_id_ = -1;
  std::string chat_template_;
};

}  // namespace nbrl::model

#endif  // NBRL_MODEL_TOKENIZER_H_
