#include "agent/rewards.h"

#include "gtest/gtest.h"

namespace nbrl::agent {
namespace {

struct Case {
  const char* name;
  RewardOptions options;
  EpisodeOutcome episode;
  double total;
  double em_raw;
  double last_step;
};

RewardOptions Weights(double em, double f1, double has, double format, double exec) {
  RewardOptions o;
  o.em = em;
  o.f1 = f1;
  o.has_answer = has;
  o.format = format;
  o.execution = exec;
  return o;
}

StepOutcome Step(bool formed, bool ok, int tokens = 10) { return {formed, ok, tokens}; }

TEST(RewardsTest, ComponentTable) {
  RewardOptions length = Weights(1, 0, 0, 0, 0);
  length.length_penalty = 0.001;
  length.length_budget_tokens = 100;
  RewardOptions numeric = Weights(1, 0, 0, 0, 0);
  numeric.answer_match = "numeric";
  const Case cases[] = {
      {"exact answer only",
       Weights(1, 0, 0, 0, 0),
       {{Step(true, true)}, true, "The Zarnow Institute", {"Zarnow Institute"}},
       1.0,
       1.0,
       1.0},
      {"wrong answer",
       Weights(1, 0, 0, 0, 0),
       {{Step(true, true)}, true, "Berlin", {"Paris"}},
       0.0,
       0.0,
       0.0},
      {"no answer",
       Weights(1, 0, 0.5, 0, 0),
       {{Step(true, true)}, false, "", {"x"}},
       0.0,
       0.0,
       0.0},
      {"has answer",
       Weights(0, 0, 0.5, 0, 0),
       {{Step(true, true)}, true, "y", {"x"}},
       0.5,
       0.0,
       0.5},
      {"partial f1",
       Weights(0, 1, 0, 0, 0),
       {{Step(true, true)}, true, "Zarnow Institute Berlin", {"Zarnow Institute"}},
       0.8,
       0.0,
       0.8},
      // Step components are scaled by 1/steps: 2 of 4 well formed -> 0.1 * 2/4.
      {"format per step",
       Weights(0, 0, 0, 0.1, 0),
       {{Step(true, false), Step(false, false), Step(true, true), Step(false, false)},
        false,
        "",
        {"x"}},
       0.05,
       0.0,
       0.0},
      {"execution per step",
       Weights(0, 0, 0, 0, 0.2),
       {{Step(true, true), Step(true, false)}, false, "", {"x"}},
       0.1,
       0.0,
       0.0},
      {"everything",
       Weights(1, 0, 0, 0.1, 0.1),
       {{Step(true, true), Step(true, true)}, true, "x", {"x"}},
       1.2,
       1.0,
       1.1},
      {"length penalty",
       length,
       {{Step(true, true, 80), Step(true, true, 70)}, true, "x", {"x"}},
       1.0 - 0.05,
       1.0,
       0.95},
      {"numeric tolerance",
       numeric,
       {{Step(true, true)}, true, "1,234.0", {"1234"}},
       1.0,
       1.0,
       1.0},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(ValidateRewardOptions(c.options).ok()) << c.name;
    RewardBreakdown r = ComputeRewards(c.options, c.episode);
    EXPECT_NEAR(r.total, c.total, 1e-12) << c.name;
    EXPECT_NEAR(r.final["em_raw"], c.em_raw, 1e-12) << c.name;
    EXPECT_NEAR(r.step_totals.back(), c.last_step, 1e-12) << c.name;
    double sum = 0;
    for (double t : r.step_totals) sum += t;
    EXPECT_NEAR(sum, r.total, 1e-12) << c.name;
    EXPECT_EQ(r.steps.size(), c.episode.steps.size()) << c.name;
  }
}

TEST(RewardsTest, EpisodeWithoutStepsStillScores) {
  RewardBreakdown r =
      ComputeRewards(Weights(1, 0, 0, 0.1, 0.1), {{}, false, "", {"x"}});
  EXPECT_EQ(r.total, 0.0);
  EXPECT_EQ(r.step_totals.size(), 1u);
}

TEST(RewardsTest, BadOptionsAreRejected) {
  RewardOptions o;
  o.em = -1;
  EXPECT_FALSE(ValidateRewardOptions(o).ok());
  o = RewardOptions();
  o.answer_match = "fuzzy";
  EXPECT_FALSE(ValidateRewardOptions(o).ok());
}

}  // namespace
}  // namespace nbrl::agent
