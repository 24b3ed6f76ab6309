// Fuzzes the tokenizer (model/tokenizer_files.h, model/tokenizer.h).
//
// The first byte picks the mode; the rest is the payload.
//  - Even first byte, "files": the payload is TOKENIZER_JSON [\0 CONFIG_JSON [\0 TEXT]]
//    (JSON text holds no raw NUL). The files are parsed and a tokenizer built from
//    them; when that succeeds, TEXT is encoded with and without special tokens and
//    every id produced must decode.
//  - Odd first byte, "text": the payload is text for a small fixed tokenizer (trained
//    once at start-up with model/bpe_trainer): Decode(Encode(x)) must give x back,
//    exactly up to NFC of its well-formed stretches (tokenizer.h's promise), with and
//    without special tokens; the payload read as little-endian int32 ids must decode
//    or be refused with a status.
// Any crash, sanitizer report, failed check (abort) or hang is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/utf8.h"
#include "model/bpe_trainer.h"
#include "model/nfc.h"
#include "model/tokenizer.h"
#include "model/tokenizer_files.h"

namespace {

using nbrl::model::Tokenizer;

void Fail(const char* what, absl::string_view detail) {
  std::fprintf(stderr, "tokenizer_fuzzer: %s: %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// Some text in the tokenizer's domain: words, code, non-ASCII, whitespace runs.
std::string TrainingCorpus() {
  const char* const kLines[] = {
      "def answer(x):\n    return x * 2  # the notebook agent\n",
      "print(notepad.add_facts(['café', 'naïve', 'über']))\n",
      "The policy samples an action; the sandbox runs it.\r\n",
      "   indented    text\t\twith  tabs\n\n\n",
      "привет мир 世界 こんにちは 😀 ١٢٣ 12345 3.14159\n",
      "<think>reason</think><code>x = 1</code>\n",
      "it's we're they've I'm you'll he'd IT'S\n",
  };
  std::string corpus;
  for (int round = 0; round < 20; ++round) {
    for (const char* line : kLines) corpus += line;
  }
  return corpus;
}

const Tokenizer& FixedTokenizer() {
  static const Tokenizer* tokenizer = [] {
    nbrl::model::BpeTrainerOptions options;
    options.vocab_size = 420;
    absl::StatusOr<nbrl::model::TokenizerFiles> files =
        nbrl::model::TrainBpeTokenizer(TrainingCorpus(), options);
    if (!files.ok()) Fail("training the fixed tokenizer", files.status().ToString());
    absl::StatusOr<nbrl::model::TokenizerSpec> spec = nbrl::model::ParseTokenizerFiles(
        files->tokenizer_json, "fixed/tokenizer.json", files->tokenizer_config_json,
        "fixed/tokenizer_config.json");
    if (!spec.ok()) Fail("parsing the fixed tokenizer", spec.status().ToString());
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Create(*std::move(spec));
    if (!t.ok()) Fail("building the fixed tokenizer", t.status().ToString());
    for (const nbrl::model::AddedToken& a : (*t)->added_tokens()) {
      // The round trip below relies on added tokens keeping the text around them.
      if (a.lstrip || a.rstrip) Fail("fixed tokenizer", "an added token strips");
    }
    return t->release();
  }();
  return *tokenizer;
}

// `text` with each maximal well-formed UTF-8 stretch in NFC and every other byte
// kept: what Decode(Encode(text)) must return for an NFC tokenizer.
std::string CanonicalText(absl::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    char32_t cp = 0;
    const bool valid = nbrl::common::Utf8SequenceAt(text, pos, &cp) > 0;
    while (pos < text.size()) {
      const size_t len = nbrl::common::Utf8SequenceAt(text, pos, &cp);
      if ((len > 0) != valid) break;
      pos += valid ? len : 1;
    }
    absl::string_view part = text.substr(start, pos - start);
    if (!valid) {
      out.append(part.data(), part.size());
      continue;
    }
    absl::StatusOr<std::string> nfc = nbrl::model::NfcNormalize(part);
    if (!nfc.ok()) Fail("NFC of well-formed UTF-8 failed", nfc.status().ToString());
    out += *nfc;
  }
  return out;
}

void CheckDecodes(const Tokenizer& t, const std::vector<int32_t>& ids,
                  const char* what) {
  for (int32_t id : ids) {
    if (id < 0 || id >= t.vocab_size()) Fail(what, "an id outside the vocabulary");
  }
  absl::StatusOr<std::string> text = t.Decode(ids);
  if (!text.ok()) Fail(what, text.status().ToString());
  absl::StatusOr<std::string> skipped = t.Decode(ids, /*skip_special_tokens=*/true);
  if (!skipped.ok()) Fail(what, skipped.status().ToString());
}

void FuzzFiles(absl::string_view payload) {
  const size_t json_end = std::min(payload.find('\0'), payload.size());
  const std::string json(payload.substr(0, json_end));
  std::optional<std::string> config;
  std::string text;
  if (json_end < payload.size()) {
    absl::string_view rest = payload.substr(json_end + 1);
    const size_t config_end = std::min(rest.find('\0'), rest.size());
    config = std::string(rest.substr(0, config_end));
    if (config_end < rest.size()) text = std::string(rest.substr(config_end + 1));
  }
  absl::StatusOr<nbrl::model::TokenizerSpec> spec = nbrl::model::ParseTokenizerFiles(
      json, "fuzz/tokenizer.json", config, "fuzz/tokenizer_config.json");
  if (!spec.ok()) return;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Create(*std::move(spec));
  if (!t.ok()) return;
  const Tokenizer& tok = **t;
  CheckDecodes(tok, tok.Encode(text), "Encode");
  CheckDecodes(tok, tok.EncodeWithSpecialTokens(text), "EncodeWithSpecialTokens");
  for (int32_t id : {tok.eos_id(), tok.bos_id(), tok.pad_id()}) {
    if (id != -1 && !tok.IdToToken(id).ok()) Fail("special id", "not a token");
  }
}

void FuzzText(absl::string_view text) {
  const Tokenizer& t = FixedTokenizer();
  const std::string want = CanonicalText(text);

  std::vector<int32_t> ids = t.Encode(text);
  CheckDecodes(t, ids, "Encode");
  if (*t.Decode(ids) != want) Fail("Decode(Encode(x)) != x", text);

  std::vector<int32_t> special = t.EncodeWithSpecialTokens(text);
  CheckDecodes(t, special, "EncodeWithSpecialTokens");
  // Added tokens decode to their content, and NFC of the pieces between them
  // re-normalizes to NFC of the whole.
  if (CanonicalText(*t.Decode(special)) != want) {
    Fail("Decode(EncodeWithSpecialTokens(x)) != x", text);
  }

  std::vector<int32_t> raw(text.size() / sizeof(int32_t));
  if (!raw.empty()) std::memcpy(raw.data(), text.data(), raw.size() * sizeof(int32_t));
  bool in_range = true;
  for (int32_t id : raw) in_range = in_range && id >= 0 && id < t.vocab_size();
  if (t.Decode(raw).ok() != in_range) Fail("Decode of raw ids", "wrong status");
  for (int32_t id : raw) {
    if (t.IdToToken(id).ok() != (id >= 0 && id < t.vocab_size())) {
      Fail("IdToToken", "wrong status");
    }
    t.IsSpecial(id);
  }
  t.TokenToId(text);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  FixedTokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  absl::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    FuzzFiles(payload);
  } else {
    FuzzText(payload);
  }
  return 0;
}
