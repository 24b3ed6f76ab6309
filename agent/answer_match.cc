#include "agent/answer_match.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace nbrl::agent {
namespace {

bool IsAsciiPunct(unsigned char c) { return c < 128 && std::ispunct(c); }

std::vector<std::string> Tokens(const std::string& normalized) {
  return absl::StrSplit(normalized, ' ', absl::SkipEmpty());
}

double TokenF1(const std::string& prediction, const std::string& gold) {
  std::vector<std::string> p = Tokens(NormalizeAnswer(prediction));
  std::vector<std::string> g = Tokens(NormalizeAnswer(gold));
  if (p.empty() || g.empty()) return p.empty() && g.empty() ? 1.0 : 0.0;
  std::map<std::string, int> counts;
  for (const auto& t : g) counts[t]++;
  int common = 0;
  for (const auto& t : p) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  }
  if (common == 0) return 0.0;
  double precision = static_cast<double>(common) / p.size();
  double recall = static_cast<double>(common) / g.size();
  return 2 * precision * recall / (precision + recall);
}

bool ParseNumber(std::string text, double* out) {
  absl::string_view v = absl::StripAsciiWhitespace(text);
  absl::ConsumePrefix(&v, "$");
  absl::ConsumeSuffix(&v, "%");
  std::string cleaned;
  for (char c : v) {
    if (c != ',') cleaned.push_back(c);
  }
  return !cleaned.empty() && absl::SimpleAtod(cleaned, out) && std::isfinite(*out);
}

}  // namespace

std::string NormalizeAnswer(const std::string& text) {
  std::string lowered;
  lowered.reserve(text.size());
  for (unsigned char c : text) {
    if (IsAsciiPunct(c)) continue;
    lowered.push_back(c < 128 ? static_cast<char>(std::tolower(c))
                              : static_cast<char>(c));
  }
  std::string out;
  for (absl::string_view word :
       absl::StrSplit(lowered, absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty())) {
    if (word == "a" || word == "an" || word == "the") continue;
    if (!out.empty()) out.push_back(' ');
    out.append(word.data(), word.size());
  }
  return out;
}

double ExactMatch(const std::string& prediction,
                  const std::vector<std::string>& golds) {
  std::string p = NormalizeAnswer(prediction);
  for (const auto& g : golds) {
    if (p == NormalizeAnswer(g)) return 1.0;
  }
  return 0.0;
}

double F1Score(const std::string& prediction, const std::vector<std::string>& golds) {
  double best = 0.0;
  for (const auto& g : golds) best = std::max(best, TokenF1(prediction, g));
  return best;
}

double NumericMatch(const std::string& prediction,
                    const std::vector<std::string>& golds, double rel_tol,
                    double abs_tol) {
  double p;
  if (ParseNumber(prediction, &p)) {
    for (const auto& g : golds) {
      double v;
      if (!ParseNumber(g, &v)) continue;
      if (std::fabs(p - v) <=
          std::max(abs_tol, rel_tol * std::max(std::fabs(p), std::fabs(v)))) {
        return 1.0;
      }
    }
  }
  return ExactMatch(prediction, golds);
}

}  // namespace nbrl::agent
