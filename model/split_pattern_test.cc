#include "model/split_pattern.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> SplitWith(const char* pattern, absl::string_view text) {
  absl::StatusOr<std::unique_ptr<SplitPattern>> split = SplitPattern::Create(pattern);
  EXPECT_TRUE(split.ok()) << split.status();
  if (!split.ok()) return {};
  std::vector<absl::string_view> pieces;
  (*split)->Split(text, &pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}

std::vector<std::string> Qwen(absl::string_view text) {
  return SplitWith(kQwen2SplitPattern, text);
}

TEST(SplitPatternTest, WhitespaceRunBeforeWordLeavesLastSpaceToTheWord) {
  // \s+(?!\S) takes the run minus its last space; the word takes that space.
  EXPECT_THAT(Qwen("Hello   world"), ElementsAre("Hello", "  ", " world"));
}

TEST(SplitPatternTest, SingleSpaceBeforePunctuationFallsToPunctuation) {
  EXPECT_THAT(Qwen("a ,b"), ElementsAre("a", " ,", "b"));
}

TEST(SplitPatternTest, TrailingWhitespaceIsOnePiece) {
  EXPECT_THAT(Qwen("x \t  "), ElementsAre("x", " \t  "));
}

TEST(SplitPatternTest, NewlinesGroupWithPrecedingSpaces) {
  EXPECT_THAT(Qwen("a  \n\n  b"), ElementsAre("a", "  \n\n", " ", " b"));
}

TEST(SplitPatternTest, SingleSpaceBeforeDigitIsItsOwnPiece) {
  // One space followed by a non-space: the lookahead fails, \s+ takes it.
  EXPECT_THAT(Qwen("x 12"), ElementsAre("x", " ", "1", "2"));
}

TEST(SplitPatternTest, BracketsAreOrdinaryPunctuation) {
  // '[' right after a class's '^' must not leak into the class.
  EXPECT_THAT(Qwen("a: [1"), ElementsAre("a", ":", " [", "1"));
  EXPECT_THAT(Qwen("<%(;[^\r"), ElementsAre("<%(;[^\r"));
}

TEST(SplitPatternTest, ContractionsAreCaseInsensitive) {
  EXPECT_THAT(Qwen("it's WE'LL"), ElementsAre("it", "'s", " WE", "'LL"));
}

TEST(SplitPatternTest, UnicodeWhitespaceIsWhitespace) {
  // U+3000 is White_Space; RE2's own \s would not see it.
  EXPECT_THAT(Qwen("a\u3000\u3000b"), ElementsAre("a", "\u3000", "\u3000b"));
  EXPECT_THAT(Qwen("a\u00a0\u00a0"), ElementsAre("a", "\u00a0\u00a0"));
}

TEST(SplitPatternTest, CjkAndDigitsSplitLikeHuggingFace) {
  EXPECT_THAT(Qwen("你好2024年"), ElementsAre("你好", "2", "0", "2", "4", "年"));
}

TEST(SplitPatternTest, Gpt2PatternGroupsDigitsAndLeadingSpace) {
  EXPECT_THAT(SplitWith(kGpt2SplitPattern, "I'm  123 ok!"),
              ElementsAre("I", "'m", " ", " 123", " ok", "!"));
}

TEST(SplitPatternTest, UnmatchedStretchesBecomePieces) {
  EXPECT_THAT(SplitWith("a+", "xxaayaz"), ElementsAre("xx", "aa", "y", "a", "z"));
}

TEST(SplitPatternTest, OtherLookaroundIsRejected) {
  for (const char* pattern : {"a(?=b)", "(?<!x)y", "\\s+(?!\\d)", "(?>ab)"}) {
    absl::StatusOr<std::unique_ptr<SplitPattern>> split = SplitPattern::Create(pattern);
    ASSERT_FALSE(split.ok()) << pattern;
    EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(split.status().message(), HasSubstr("not supported"));
  }
}

TEST(SplitPatternTest, NegatedWhitespaceInsideClassIsRejected) {
  absl::StatusOr<std::unique_ptr<SplitPattern>> split = SplitPattern::Create("[\\Sa]");
  ASSERT_FALSE(split.ok());
  EXPECT_THAT(split.status().message(), HasSubstr("\\S inside a character class"));
}

TEST(SplitPatternTest, PatternThatDoesNotCompileIsRejected) {
  absl::StatusOr<std::unique_ptr<SplitPattern>> split = SplitPattern::Create("(ab");
  ASSERT_FALSE(split.ok());
  EXPECT_THAT(split.status().message(), HasSubstr("does not compile"));
}

}  // namespace
}  // namespace nbrl::model
