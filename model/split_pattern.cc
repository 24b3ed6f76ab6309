#include "model/split_pattern.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/byte_level.h"

namespace nbrl::model {

const char kGpt2SplitPattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| "
    "?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char kQwen2SplitPattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

constexpr absl::string_view kWhitespaceLookahead = "\\s+(?!\\S)";

// Splits at top-level '|' (outside groups and classes).
std::vector<std::string> TopLevelAlternatives(absl::string_view pattern) {
  std::vector<std::string> alternatives(1);
  int depth = 0;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      alternatives.back().append(pattern.data() + i, 2);
      ++i;
      continue;
    }
    if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
      alternatives.back() += c;
      // '^' negates; a ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') {
        alternatives.back() += pattern[++i];
      }
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') {
        alternatives.back() += pattern[++i];
      }
      continue;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    } else if (c == '|' && depth == 0) {
      alternatives.emplace_back();
      continue;
    }
    alternatives.back() += c;
  }
  return alternatives;
}

// Rewrites \s and \S to Unicode White_Space; rejects lookaround.
absl::StatusOr<std::string> TranslateAlternative(absl::string_view alt) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < alt.size(); ++i) {
    char c = alt[i];
    if (c == '\\' && i + 1 < alt.size()) {
      char n = alt[++i];
      if (n == 's') {
        out += in_class ? std::string(kRe2WhitespaceClassBody)
                        : absl::StrCat("[", kRe2WhitespaceClassBody, "]");
      } else if (n == 'S') {
        if (in_class) {
          return absl::InvalidArgumentError(absl::StrCat(
              "\\S inside a character class is not supported: '", alt, "'"));
        }
        out += absl::StrCat("[^", kRe2WhitespaceClassBody, "]");
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '(' && alt.substr(i, 3) == "(?=") {
      return absl::InvalidArgumentError(absl::StrCat(
          "lookahead '(?=' is not supported (only the alternative \\s+(?!\\S) is): '",
          alt, "'"));
    }
    if (!in_class && c == '(' &&
        (alt.substr(i, 3) == "(?!" || alt.substr(i, 3) == "(?<" ||
         alt.substr(i, 3) == "(?>")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lookaround or atomic group '", alt.substr(i, 3),
          "' is not supported (only the alternative \\s+(?!\\S) is): '", alt, "'"));
    }
    if (in_class && c == ']')
      in_class = false;
    else if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < alt.size() && alt[i + 1] == '^') out += alt[++i];
      if (i + 1 < alt.size() && alt[i + 1] == ']') out += alt[++i];
      continue;
    }
    out += c;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<RE2>> Compile(const std::vector<std::string>& alts) {
  if (alts.empty()) return std::unique_ptr<RE2>();
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(absl::StrCat("(?:", absl::StrJoin(alts, "|"), ")"),
                                  options);
  if (!re->ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the split pattern does not compile with RE2: ", re->error()));
  }
  return re;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SplitPattern>> SplitPattern::Create(
    absl::string_view pattern) {
  std::vector<std::string> before, after;
  bool lookahead = false;
  for (const std::string& alt : TopLevelAlternatives(pattern)) {
    if (alt == kWhitespaceLookahead && !lookahead) {
      lookahead = true;
      continue;
    }
    absl::StatusOr<std::string> translated = TranslateAlternative(alt);
    if (!translated.ok()) return translated.status();
    (lookahead ? after : before).push_back(*std::move(translated));
  }
  auto split = std::unique_ptr<SplitPattern>(new SplitPattern());
  split->whitespace_lookahead_ = lookahead;
  absl::StatusOr<std::unique_ptr<RE2>> re = Compile(before);
  if (!re.ok()) return re.status();
  split->before_ = *std::move(re);
  re = Compile(after);
  if (!re.ok()) return re.status();
  split->after_ = *std::move(re);
  return split;
}

size_t SplitPattern::MatchAt(absl::string_view text, size_t pos) const {
  const re2::StringPiece input(text.data(), text.size());
  re2::StringPiece match;
  if (before_ != nullptr &&
      before_->Match(input, pos, text.size(), RE2::ANCHOR_START, &match, 1) &&
      !match.empty()) {
    return match.size();
  }
  if (whitespace_lookahead_) {
    // \s+(?!\S): take the whole run when it ends the text; otherwise backtrack one
    // character so that the run is followed by whitespace (its own last character),
    // which needs a run of at least two characters.
    size_t end = pos, last_start = pos, chars = 0;
    char32_t cp = 0;
    while (end < text.size()) {
      size_t len = Utf8SequenceAt(text, end, &cp);
      if (len == 0 || !IsUnicodeWhitespace(cp)) break;
      last_start = end;
      end += len;
      ++chars;
    }
    if (chars > 0 && end == text.size()) return end - pos;
    if (chars >= 2) return last_start - pos;
  }
  if (after_ != nullptr &&
      after_->Match(input, pos, text.size(), RE2::ANCHOR_START, &match, 1) &&
      !match.empty()) {
    return match.size();
  }
  return 0;
}

void SplitPattern::Split(absl::string_view text,
                         std::vector<absl::string_view>* pieces) const {
  size_t pos = 0;
  size_t gap_start = absl::string_view::npos;
  while (pos < text.size()) {
    size_t len = MatchAt(text, pos);
    if (len > 0) {
      if (gap_start != absl::string_view::npos) {
        pieces->push_back(text.substr(gap_start, pos - gap_start));
        gap_start = absl::string_view::npos;
      }
      pieces->push_back(text.substr(pos, len));
      pos += len;
      continue;
    }
    if (gap_start == absl::string_view::npos) gap_start = pos;
    char32_t cp = 0;
    size_t step = Utf8SequenceAt(text, pos, &cp);
    pos += step == 0 ? 1 : step;
  }
  if (gap_start != absl::string_view::npos) {
    pieces->push_back(text.substr(gap_start));
  }
}

}  // namespace nbrl::model
