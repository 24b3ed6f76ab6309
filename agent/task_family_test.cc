#include "agent/task_family.h"

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::agent {
namespace {

using ::testing::HasSubstr;

TEST(TaskFamilyTest, FactoryKnowsTheShippedFamilies) {
  for (const char* name : {"qa_search", "math", "code", "minimal"}) {
    auto f = MakeTaskFamily(name);
    ASSERT_TRUE(f.ok()) << name;
    EXPECT_EQ((*f)->name(), name);
  }
  auto bad = MakeTaskFamily("chess");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("is not one of"));
  EXPECT_EQ((*MakeTaskFamily("qa_search"))->tool_names().size(), 2u);
  EXPECT_TRUE((*MakeTaskFamily("math"))->tool_names().empty());
}

TEST(TaskFamilyTest, MinimalAndQaVerifyByExactMatch) {
  Example ex{"q", "Who?", {"Ana Berg"}, "{}"};
  for (const char* name : {"minimal", "qa_search"}) {
    auto f = *MakeTaskFamily(name);
    EXPECT_EQ(f->Verify(ex, true, "the ana berg", nullptr)->score, 1.0) << name;
    EXPECT_EQ(f->Verify(ex, true, "Ana", nullptr)->score, 0.0) << name;
    EXPECT_EQ(f->Verify(ex, false, "", nullptr)->score, 0.0) << name;
    EXPECT_THAT(f->TaskText(ex), HasSubstr("submit_final_answer"));
  }
}

TEST(TaskFamilyTest, MathUsesANumericTolerance) {
  auto f = *MakeTaskFamily("math");
  Example ex{"m", "What is 1/3 of 300?", {"100"}, "{}"};
  EXPECT_EQ(f->Verify(ex, true, "100.0", nullptr)->score, 1.0);
  EXPECT_EQ(f->Verify(ex, true, "100.001", nullptr)->score, 1.0);
  EXPECT_EQ(f->Verify(ex, true, "101", nullptr)->score, 0.0);
}

TEST(TaskFamilyTest, MathProblemsAreSeededAndCorrect) {
  auto a = MakeMathProblems(3, 50);
  auto b = MakeMathProblems(3, 50);
  ASSERT_EQ(a.size(), 50u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].question, b[i].question);
  int series = 0;
  for (const Example& ex : a) {
    auto meta = nlohmann::json::parse(ex.metadata_json);
    if (meta["kind"] != "series") continue;
    // "What is the sum of the integers from A to B?": check by looping.
    int lo, hi;
    ASSERT_EQ(sscanf(ex.question.c_str(),
                     "What is the sum of the integers from %d to %d?", &lo, &hi),
              2);
    long long sum = 0;
    for (int k = lo; k <= hi; ++k) sum += k;
    EXPECT_EQ(ex.answers[0], std::to_string(sum));
    ++series;
  }
  EXPECT_GT(series, 0);
}

TEST(TaskFamilyTest, CodeFamilyNeedsTestsAndASandbox) {
  auto f = *MakeTaskFamily("code");
  Example no_tests{"c", "Add two numbers.", {""}, "{\"entry_point\": \"add\"}"};
  EXPECT_EQ(
      f->Verify(no_tests, true, "def add(a, b): return a + b", nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
  Example ex{"c",
             "Add two numbers.",
             {""},
             "{\"entry_point\": \"add\", \"tests\": [\"assert add(1, 2) == 3\"]}"};
  EXPECT_EQ(f->Verify(ex, true, "def add(a, b): return a + b", nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(f->Verify(ex, false, "", nullptr)->score, 0.0);
  EXPECT_THAT(f->TaskText(ex), HasSubstr("`add`"));
}

}  // namespace
}  // namespace nbrl::agent
