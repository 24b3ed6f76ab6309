#include "agent/answer_match.h"

#include "gtest/gtest.h"

namespace nbrl::agent {
namespace {

TEST(NormalizeAnswerTest, SquadRules) {
  struct Case {
    const char* in;
    const char* out;
  };
  for (const Case& c : std::vector<Case>{
           {"The Eiffel Tower", "eiffel tower"},
           {"  an   apple,  a pie! ", "apple pie"},
           {"U.S.A.", "usa"},
           {"theater", "theater"},  // articles only as whole words
           {"Zürich", "zürich"},    // non-ASCII kept as written
           {"", ""},
           {"the", ""},
       }) {
    EXPECT_EQ(NormalizeAnswer(c.in), c.out) << c.in;
  }
}

TEST(ExactMatchTest, MaxOverGolds) {
  EXPECT_EQ(ExactMatch("the Zarnow Institute", {"Zarnow Institute"}), 1.0);
  EXPECT_EQ(ExactMatch("Zarnow", {"Zarnow Institute", "zarnow"}), 1.0);
  EXPECT_EQ(ExactMatch("Zarnow Inst", {"Zarnow Institute"}), 0.0);
  EXPECT_EQ(ExactMatch("x", {}), 0.0);
}

TEST(F1ScoreTest, TokenOverlap) {
  // pred {zarnow, institute, berlin} vs gold {zarnow, institute}: p=2/3, r=1.
  EXPECT_NEAR(F1Score("Zarnow Institute Berlin", {"the Zarnow Institute"}), 0.8, 1e-12);
  EXPECT_EQ(F1Score("Paris", {"London", "paris"}), 1.0);
  EXPECT_EQ(F1Score("Paris", {"London"}), 0.0);
  EXPECT_EQ(F1Score("", {""}), 1.0);
  EXPECT_EQ(F1Score("", {"x"}), 0.0);
  // Repeated tokens count once per occurrence in the gold.
  EXPECT_NEAR(F1Score("a1 a1 a1", {"a1"}), 2 * (1.0 / 3) * 1 / (1.0 / 3 + 1), 1e-12);
}

TEST(NumericMatchTest, ToleranceAndFormats) {
  EXPECT_EQ(NumericMatch("1,234.0", {"1234"}), 1.0);
  EXPECT_EQ(NumericMatch("$12", {"12.0000000001"}), 1.0);
  EXPECT_EQ(NumericMatch("12.5%", {"12.5"}), 1.0);
  EXPECT_EQ(NumericMatch("12.6", {"12.5"}), 0.0);
  EXPECT_EQ(NumericMatch("twelve", {"twelve"}), 1.0);  // falls back to EM
  EXPECT_EQ(NumericMatch("0.1", {"0.3"}, /*rel_tol=*/1e-6, /*abs_tol=*/0.25), 1.0);
}

}  // namespace
}  // namespace nbrl::agent
