#include "model/tokenizer_files.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "model/split_pattern.h"

namespace nbrl::model {
namespace {

using Json = nlohmann::json;

// Error helpers: every message starts "FILE: field 'PATH': ".
absl::Status Malformed(const std::string& file, const std::string& field,
                       const std::string& what) {
  return absl::DataLossError(absl::StrCat(file, ": field '", field, "': ", what));
}
absl::Status Unsupported(const std::string& file, const std::string& field,
                         const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": field '", field, "': ", what,
                   " (see docs/tokenizer.md for what nbrl supports)"));
}

// A value for an error message: a scalar as written, a container by its size (a
// recursive dump() of a deeply nested value would overflow the stack).
std::string Shown(const Json& j) { return common::JsonForMessage(j); }

absl::StatusOr<Json> ParseJson(const std::string& text, const std::string& file) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    return absl::DataLossError(
        absl::StrCat(file, ": not valid JSON (truncated or malformed) at byte ", e.byte,
                     ": ", e.what()));
  }
}

// The member `key` of object `obj` (whose path is `path`), or null when absent.
const Json* Member(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

bool IsNullOr(const Json* j, bool (Json::*is)() const) {
  return j == nullptr || j->is_null() || ((*j).*is)();
}

absl::StatusOr<std::string> TypeOf(const Json& j, const std::string& file,
                                   const std::string& field) {
  if (!j.is_object()) return Malformed(file, field, "expected an object");
  const Json* type = Member(j, "type");
  if (type == nullptr || !type->is_string()) {
    return Malformed(file, field + ".type", "expected a string");
  }
  return type->get<std::string>();
}

absl::Status ParseModel(const Json& model, const std::string& file,
                        TokenizerSpec* spec) {
  if (!model.is_object()) return Malformed(file, "model", "expected an object");
  const Json* type = Member(model, "type");
  if (type != nullptr && !(type->is_string() && *type == "BPE")) {
    return Unsupported(file, "model.type",
                       absl::StrCat("model type ", Shown(*type),
                                    " is not supported; only \"BPE\" is"));
  }
  const Json* dropout = Member(model, "dropout");
  if (dropout != nullptr && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return Unsupported(file, "model.dropout", "BPE dropout is not supported");
  }
  const Json* fallback = Member(model, "byte_fallback");
  if (fallback != nullptr && fallback->is_boolean() && fallback->get<bool>()) {
    return Unsupported(file, "model.byte_fallback",
                       "byte_fallback (SentencePiece-style BPE) is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* affix = Member(model, key);
    if (affix != nullptr && !affix->is_null() &&
        !(affix->is_string() && affix->get<std::string>().empty())) {
      return Unsupported(file, absl::StrCat("model.", key), "must be empty or null");
    }
  }
  if (const Json* ignore = Member(model, "ignore_merges"); ignore != nullptr) {
    if (!IsNullOr(ignore, &Json::is_boolean)) {
      return Malformed(file, "model.ignore_merges", "expected a boolean");
    }
    spec->ignore_merges = ignore->is_boolean() && ignore->get<bool>();
  }
  const Json* vocab = Member(model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return Malformed(file, "model.vocab", "expected an object mapping token to id");
  }
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > (1 << 30)) {
      return Malformed(
          file, absl::StrCat("model.vocab[\"", token, "\"]"),
          absl::StrCat("expected a non-negative integer id, got ", Shown(id)));
    }
    spec->vocab.emplace(token, id.get<int32_t>());
  }
  const Json* merges = Member(model, "merges");
  if (merges == nullptr || !merges->is_array()) {
    return Malformed(file, "model.merges", "expected an array");
  }
  spec->merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& m = (*merges)[i];
    std::string field = absl::StrCat("model.merges[", i, "]");
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size() ||
          s.find(' ', space + 1) != std::string::npos) {
        return Malformed(
            file, field,
            absl::StrCat("expected \"left right\" (one space), got ", Shown(m)));
      }
      spec->merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return Malformed(file, field,
                       absl::StrCat("expected \"left right\" or [\"left\", \"right\"], "
                                    "got ",
                                    Shown(m)));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const Json& root, const std::string& file,
                              TokenizerSpec* spec) {
  const Json* added = Member(root, "added_tokens");
  if (added == nullptr || added->is_null()) return absl::OkStatus();
  if (!added->is_array()) return Malformed(file, "added_tokens", "expected an array");
  for (size_t i = 0; i < added->size(); ++i) {
    const Json& t = (*added)[i];
    std::string field = absl::StrCat("added_tokens[", i, "]");
    if (!t.is_object()) return Malformed(file, field, "expected an object");
    const Json* id = Member(t, "id");
    const Json* content = Member(t, "content");
    if (id == nullptr || !id->is_number_integer() || id->get<int64_t>() < 0 ||
        id->get<int64_t>() > (1 << 30)) {
      return Malformed(file, field + ".id", "expected a non-negative integer");
    }
    if (content == nullptr || !content->is_string() ||
        content->get_ref<const std::string&>().empty()) {
      return Malformed(file, field + ".content", "expected a non-empty string");
    }
    AddedToken token;
    token.id = id->get<int32_t>();
    token.content = content->get<std::string>();
    for (auto [key, out] : {std::pair<const char*, bool*>{"special", &token.special},
                            {"lstrip", &token.lstrip},
                            {"rstrip", &token.rstrip}}) {
      const Json* flag = Member(t, key);
      if (!IsNullOr(flag, &Json::is_boolean)) {
        return Malformed(file, absl::StrCat(field, ".", key), "expected a boolean");
      }
      *out = flag != nullptr && flag->is_boolean() && flag->get<bool>();
    }
    const Json* single_word = Member(t, "single_word");
    if (single_word != nullptr && single_word->is_boolean() &&
        single_word->get<bool>()) {
      return Unsupported(file, field + ".single_word", "single_word tokens");
    }
    spec->added_tokens.push_back(std::move(token));
  }
  return absl::OkStatus();
}

absl::Status ParseNormalizer(const Json& root, const std::string& file,
                             TokenizerSpec* spec) {
  const Json* n = Member(root, "normalizer");
  if (n == nullptr || n->is_null()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string type, TypeOf(*n, file, "normalizer"));
  if (type == "NFC") {
    spec->nfc = true;
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    const Json* list = Member(*n, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return Malformed(file, "normalizer.normalizers", "expected an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      std::string field = absl::StrCat("normalizer.normalizers[", i, "]");
      ASSIGN_OR_RETURN(std::string t, TypeOf((*list)[i], file, field));
      if (t != "NFC") {
        return Unsupported(file, field + ".type",
                           absl::StrCat("normalizer \"", t, "\"; only NFC is"));
      }
      spec->nfc = true;
    }
    return absl::OkStatus();
  }
  return Unsupported(file, "normalizer.type",
                     absl::StrCat("normalizer \"", type, "\"; only NFC (or none) is"));
}

// ByteLevel pre-tokenizer / decoder / post-processor options we accept.
absl::Status CheckByteLevel(const Json& j, const std::string& file,
                            const std::string& field) {
  const Json* prefix = Member(j, "add_prefix_space");
  if (prefix != nullptr && prefix->is_boolean() && prefix->get<bool>()) {
    return Unsupported(file, field + ".add_prefix_space", "add_prefix_space=true");
  }
  return absl::OkStatus();
}

absl::Status ParseOnePreTokenizer(const Json& p, const std::string& file,
                                  const std::string& field, bool* byte_level,
                                  TokenizerSpec* spec) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(p, file, field));
  if (type == "ByteLevel") {
    RETURN_IF_ERROR(CheckByteLevel(p, file, field));
    const Json* use_regex = Member(p, "use_regex");
    bool regex =
        use_regex == nullptr || !use_regex->is_boolean() || use_regex->get<bool>();
    if (regex) {
      if (spec->split.has_value()) {
        return Unsupported(file, field + ".use_regex",
                           "ByteLevel use_regex=true after a Split");
      }
      spec->split = kGpt2SplitPattern;
    }
    *byte_level = true;
    return absl::OkStatus();
  }
  if (type == "Split") {
    if (*byte_level || spec->split.has_value()) {
      return Unsupported(file, field, "a Split after ByteLevel or a second Split");
    }
    const Json* pattern = Member(p, "pattern");
    const Json* regex = pattern != nullptr && pattern->is_object()
                            ? Member(*pattern, "Regex")
                            : nullptr;
    if (regex == nullptr || !regex->is_string()) {
      return Malformed(file, field + ".pattern.Regex",
                       "expected {\"Regex\": \"...\"} (String patterns are not "
                       "supported)");
    }
    const Json* behavior = Member(p, "behavior");
    if (behavior == nullptr || !behavior->is_string() || *behavior != "Isolated") {
      return Unsupported(file, field + ".behavior", "only \"Isolated\" is supported");
    }
    const Json* invert = Member(p, "invert");
    if (invert != nullptr && invert->is_boolean() && invert->get<bool>()) {
      return Unsupported(file, field + ".invert", "invert=true");
    }
    spec->split = regex->get<std::string>();
    return absl::OkStatus();
  }
  return Unsupported(
      file, field + ".type",
      absl::StrCat("pre-tokenizer \"", type, "\"; only Split and ByteLevel are"));
}

absl::Status ParsePreTokenizer(const Json& root, const std::string& file,
                               TokenizerSpec* spec) {
  const Json* p = Member(root, "pre_tokenizer");
  if (p == nullptr || p->is_null()) {
    return Unsupported(file, "pre_tokenizer", "a byte-level tokenizer needs one");
  }
  bool byte_level = false;
  ASSIGN_OR_RETURN(std::string type, TypeOf(*p, file, "pre_tokenizer"));
  if (type == "Sequence") {
    const Json* list = Member(*p, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return Malformed(file, "pre_tokenizer.pretokenizers", "expected an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(ParseOnePreTokenizer(
          (*list)[i], file, absl::StrCat("pre_tokenizer.pretokenizers[", i, "]"),
          &byte_level, spec));
    }
  } else {
    RETURN_IF_ERROR(ParseOnePreTokenizer(*p, file, "pre_tokenizer", &byte_level, spec));
  }
  if (!byte_level) {
    return Unsupported(file, "pre_tokenizer",
                       "no ByteLevel step; only byte-level BPE is supported");
  }
  return absl::OkStatus();
}

// decoder must be ByteLevel; post_processor null or ByteLevel (adds nothing).
absl::Status ParseDecoderAndPostProcessor(const Json& root, const std::string& file) {
  const Json* d = Member(root, "decoder");
  if (d == nullptr || d->is_null()) {
    return Unsupported(file, "decoder", "a ByteLevel decoder is required");
  }
  ASSIGN_OR_RETURN(std::string type, TypeOf(*d, file, "decoder"));
  if (type != "ByteLevel") {
    return Unsupported(file, "decoder.type",
                       absl::StrCat("decoder \"", type, "\"; only ByteLevel is"));
  }
  const Json* post = Member(root, "post_processor");
  if (post == nullptr || post->is_null()) return absl::OkStatus();
  ASSIGN_OR_RETURN(type, TypeOf(*post, file, "post_processor"));
  if (type != "ByteLevel") {
    return Unsupported(file, "post_processor.type",
                       absl::StrCat("post-processor \"", type,
                                    "\"; only ByteLevel (or none) is: nbrl adds no "
                                    "special tokens when encoding"));
  }
  return CheckByteLevel(*post, file, "post_processor");
}

// "eos_token": "<|im_end|>" | null | {"content": "<|im_end|>", ...}
absl::Status ReadSpecialName(const Json& config, const char* key,
                             const std::string& file, std::string* out) {
  const Json* j = Member(config, key);
  if (j == nullptr || j->is_null()) return absl::OkStatus();
  if (j->is_string()) {
    *out = j->get<std::string>();
    return absl::OkStatus();
  }
  if (j->is_object()) {
    const Json* content = Member(*j, "content");
    if (content != nullptr && content->is_string()) {
      *out = content->get<std::string>();
      return absl::OkStatus();
    }
  }
  return Malformed(
      file, key,
      absl::StrCat("expected a string, null or {\"content\": ...}, got ", Shown(*j)));
}

absl::Status ParseConfig(const std::string& text, const std::string& file,
                         TokenizerSpec* spec) {
  ASSIGN_OR_RETURN(Json config, ParseJson(text, file));
  if (!config.is_object()) return Malformed(file, "(root)", "expected an object");
  RETURN_IF_ERROR(ReadSpecialName(config, "bos_token", file, &spec->bos_token));
  RETURN_IF_ERROR(ReadSpecialName(config, "eos_token", file, &spec->eos_token));
  RETURN_IF_ERROR(ReadSpecialName(config, "pad_token", file, &spec->pad_token));
  if (const Json* t = Member(config, "chat_template"); t != nullptr && t->is_string()) {
    spec->chat_template = t->get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseTokenizerFiles(
    const std::string& json_text, const std::string& json_path,
    const std::optional<std::string>& config_text, const std::string& config_path) {
  TokenizerSpec spec;
  spec.source = json_path;
  spec.config_source = config_path;
  ASSIGN_OR_RETURN(Json root, ParseJson(json_text, json_path));
  if (!root.is_object()) return Malformed(json_path, "(root)", "expected an object");
  const Json* model = Member(root, "model");
  if (model == nullptr) return Malformed(json_path, "model", "missing");
  RETURN_IF_ERROR(ParseModel(*model, json_path, &spec));
  RETURN_IF_ERROR(ParseAddedTokens(root, json_path, &spec));
  RETURN_IF_ERROR(ParseNormalizer(root, json_path, &spec));
  RETURN_IF_ERROR(ParsePreTokenizer(root, json_path, &spec));
  RETURN_IF_ERROR(ParseDecoderAndPostProcessor(root, json_path));
  if (config_text.has_value()) {
    RETURN_IF_ERROR(ParseConfig(*config_text, config_path, &spec));
  }
  return spec;
}

}  // namespace nbrl::model
