#include "model/tokenizer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/bpe_model.h"
#include "model/byte_level.h"
#include "model/nfc.h"
#include "model/split_pattern.h"
#include "model/tokenizer_files.h"
#include "re2/re2.h"

namespace nbrl::model {
namespace {

// How many ids below the highest may have no token (tokenizers in the wild: none).
constexpr int64_t kMaxUnusedIds = 1 << 16;

// Resolves a special-token name from tokenizer_config.json to an id (-1 if empty).
absl::StatusOr<int32_t> SpecialId(const Tokenizer& t, const std::string& name,
                                  const char* field, const std::string& file) {
  if (name.empty()) return -1;
  std::optional<int32_t> id = t.TokenToId(name);
  if (!id.has_value()) {
    return absl::DataLossError(absl::StrCat(file, ": field '", field, "': token '",
                                            name,
                                            "' is neither in the vocabulary nor an "
                                            "added token of tokenizer.json"));
  }
  return *id;
}

size_t TrailingWhitespaceStart(absl::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    char32_t cp = 0;
    if (Utf8SequenceAt(s, start, &cp) != end - start || !IsUnicodeWhitespace(cp)) break;
    end = start;
  }
  return end;
}

size_t LeadingWhitespaceEnd(absl::string_view s) {
  size_t pos = 0;
  char32_t cp = 0;
  while (pos < s.size()) {
    size_t len = Utf8SequenceAt(s, pos, &cp);
    if (len == 0 || !IsUnicodeWhitespace(cp)) break;
    pos += len;
  }
  return pos;
}

}  // namespace

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir) {
  std::string config = absl::StrCat(dir, "/tokenizer_config.json");
  if (::access(config.c_str(), F_OK) != 0 && errno == ENOENT) config.clear();
  return LoadFiles(absl::StrCat(dir, "/tokenizer.json"), config);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFiles(
    const std::string& tokenizer_json_path, const std::string& config_path) {
  ASSIGN_OR_RETURN(std::string json_text, common::ReadFile(tokenizer_json_path));
  std::optional<std::string> config_text;
  if (!config_path.empty()) {
    ASSIGN_OR_RETURN(config_text, common::ReadFile(config_path));
  }
  ASSIGN_OR_RETURN(
      TokenizerSpec spec,
      ParseTokenizerFiles(json_text, tokenizer_json_path, config_text, config_path));
  return Create(std::move(spec));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerSpec spec) {
  auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
  t->nfc_ = spec.nfc;
  t->chat_template_ = spec.chat_template;
  if (spec.split.has_value()) {
    absl::StatusOr<std::unique_ptr<SplitPattern>> split =
        SplitPattern::Create(*spec.split);
    if (!split.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.source,
          ": field 'pre_tokenizer' (Split pattern): ", split.status().message()));
    }
    t->split_ = *std::move(split);
  }
  int32_t max_id = -1;
  for (const auto& [token, id] : spec.vocab) max_id = std::max(max_id, id);
  for (const AddedToken& a : spec.added_tokens) max_id = std::max(max_id, a.id);
  // Ids index dense tables, so one stray huge id would allocate gigabytes.
  const int64_t tokens =
      static_cast<int64_t>(spec.vocab.size() + spec.added_tokens.size());
  if (max_id + 1 > tokens + kMaxUnusedIds) {
    return absl::DataLossError(absl::StrCat(
        spec.source, ": fields 'model.vocab' and 'added_tokens': ids go up to ", max_id,
        " for only ", tokens, " tokens; ids must be dense (at most ", kMaxUnusedIds,
        " unused)"));
  }
  t->id_to_token_.resize(max_id + 1);
  t->id_bytes_.resize(max_id + 1);
  t->special_.resize(max_id + 1, false);
  std::vector<bool> seen(max_id + 1, false);
  for (const auto& [token, id] : spec.vocab) {
    if (seen[id]) {
      return absl::DataLossError(absl::StrCat(spec.source, ": field 'model.vocab': id ",
                                              id, " is given to two tokens"));
    }
    seen[id] = true;
    t->id_to_token_[id] = token;
    if (!ByteLevelToBytes(token, &t->id_bytes_[id])) t->id_bytes_[id] = token;
    t->token_to_id_.emplace(token, id);
  }
  std::vector<std::string> patterns;
  for (size_t i = 0; i < spec.added_tokens.size(); ++i) {
    const AddedToken& a = spec.added_tokens[i];
    if (seen[a.id] && t->id_to_token_[a.id] != a.content) {
      return absl::DataLossError(absl::StrCat(
          spec.source, ": field 'added_tokens[", i, "]': id ", a.id, " is already '",
          t->id_to_token_[a.id], "', not '", a.content, "'"));
    }
    seen[a.id] = true;
    t->id_to_token_[a.id] = a.content;
    t->id_bytes_[a.id] = a.content;
    t->special_[a.id] = a.special;
    t->token_to_id_[a.content] = a.id;
    t->added_index_[a.content] = t->added_.size();
    t->added_.push_back(a);
    patterns.push_back(RE2::QuoteMeta(a.content));
  }
  if (!patterns.empty()) {
    RE2::Options options;
    options.set_longest_match(true);  // leftmost-longest, like Hugging Face
    options.set_encoding(RE2::Options::EncodingLatin1);  // bytes, any input
    options.set_log_errors(false);
    t->added_matcher_ = std::make_unique<RE2>(absl::StrJoin(patterns, "|"), options);
    if (!t->added_matcher_->ok()) {
      return absl::InternalError(
          absl::StrCat("added-token matcher: ", t->added_matcher_->error()));
    }
  }
  BpeModelOptions bpe;
  bpe.vocab = std::move(spec.vocab);
  bpe.merges = std::move(spec.merges);
  bpe.ignore_merges = spec.ignore_merges;
  bpe.source = spec.source;
  ASSIGN_OR_RETURN(t->bpe_, BpeModel::Create(std::move(bpe)));
  const std::string& cfg = spec.config_source;
  ASSIGN_OR_RETURN(t->eos_id_, SpecialId(*t, spec.eos_token, "eos_token", cfg));
  ASSIGN_OR_RETURN(t->bos_id_, SpecialId(*t, spec.bos_token, "bos_token", cfg));
  ASSIGN_OR_RETURN(t->pad_id_, SpecialId(*t, spec.pad_token, "pad_token", cfg));
  return t;
}

void Tokenizer::EncodeValidUtf8(absl::string_view text,
                                std::vector<int32_t>* ids) const {
  std::string normalized;
  if (nfc_) {
    // Valid UTF-8 by construction, so normalization cannot fail.
    absl::StatusOr<std::string> n = NfcNormalize(text);
    if (n.ok()) {
      normalized = *std::move(n);
      text = normalized;
    }
  }
  if (split_ == nullptr) {
    bpe_->Encode(text, ids);
    return;
  }
  std::vector<absl::string_view> pieces;
  split_->Split(text, &pieces);
  for (absl::string_view piece : pieces) bpe_->Encode(piece, ids);
}

void Tokenizer::EncodeSegment(absl::string_view text, std::vector<int32_t>* ids) const {
  // Alternate maximal well-formed stretches and maximal runs of stray bytes.
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    char32_t cp = 0;
    size_t len = Utf8SequenceAt(text, pos, &cp);
    const bool valid = len > 0;
    while (pos < text.size()) {
      len = Utf8SequenceAt(text, pos, &cp);
      if ((len > 0) != valid) break;
      pos += valid ? len : 1;
    }
    absl::string_view part = text.substr(start, pos - start);
    if (valid) {
      EncodeValidUtf8(part, ids);
    } else {
      bpe_->Encode(part, ids);
    }
  }
}

std::vector<int32_t> Tokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  EncodeSegment(text, &ids);
  return ids;
}

std::vector<int32_t> Tokenizer::EncodeWithSpecialTokens(absl::string_view text) const {
  if (added_matcher_ == nullptr) return Encode(text);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  size_t pos = 0;
  bool strip_leading = false;  // the previous added token had rstrip
  const re2::StringPiece input(text.data(), text.size());
  re2::StringPiece match;
  while (pos <= text.size()) {
    bool found =
        added_matcher_->Match(input, pos, text.size(), RE2::UNANCHORED, &match, 1);
    size_t match_start = found ? match.data() - text.data() : text.size();
    absl::string_view section = text.substr(pos, match_start - pos);
    const AddedToken* token =
        found ? &added_[added_index_.at(std::string(match))] : nullptr;
    if (strip_leading) section.remove_prefix(LeadingWhitespaceEnd(section));
    if (token != nullptr && token->lstrip) {
      section = section.substr(0, TrailingWhitespaceStart(section));
    }
    EncodeSegment(section, &ids);
    if (token == nullptr) break;
    ids.push_back(token->id);
    strip_leading = token->rstrip;
    pos = match_start + match.size();
  }
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " is outside the vocabulary (size ", vocab_size(), ")"));
    }
    if (skip_special_tokens && special_[id]) continue;
    out += id_bytes_[id];
  }
  return out;
}

std::optional<int32_t> Tokenizer::TokenToId(absl::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", id, " is outside the vocabulary (size ", vocab_size(), ")"));
  }
  return id_to_token_[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

}  // namespace nbrl::model
