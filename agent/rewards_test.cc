#include "agent/rewards.h"

#include "common/nbrl_config.h"
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

TEST(RewardOptionsFromTest, ReadsTheActorRewardKeys) {
  auto defaults = common::Config::Load(common::NbrlConfigSchema(), "", {});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  RewardOptions d = RewardOptionsFrom(*defaults);
  RewardOptions built_in;
  EXPECT_EQ(d.em, built_in.em);
  EXPECT_EQ(d.f1, built_in.f1);
  EXPECT_EQ(d.has_answer, built_in.has_answer);
  EXPECT_EQ(d.format, built_in.format);
  EXPECT_EQ(d.execution, built_in.execution);

  auto c = common::Config::Load(
      common::NbrlConfigSchema(), "",
      {"actor.reward.em=2", "actor.reward.f1=0.5", "actor.reward.has_answer=0.25",
       "actor.reward.format=0", "actor.reward.execution=0"});
  ASSERT_TRUE(c.ok()) << c.status();
  RewardOptions o = RewardOptionsFrom(*c);
  EXPECT_EQ(o.em, 2);
  EXPECT_EQ(o.f1, 0.5);
  EXPECT_EQ(o.has_answer, 0.25);
  EXPECT_EQ(o.format, 0);
  EXPECT_EQ(o.execution, 0);
  EXPECT_TRUE(ValidateRewardOptions(o).ok());

  // An EM-only reward: a failed episode earns nothing for its well-formed actions.
  auto em_only =
      common::Config::Load(common::NbrlConfigSchema(), "",
                           {"actor.reward.format=0", "actor.reward.execution=0"});
  ASSERT_TRUE(em_only.ok()) << em_only.status();
  EpisodeOutcome failed;
  failed.steps = {{true, true, 10}, {true, true, 10}};
  failed.has_final_answer = true;
  failed.final_answer = "wrong";
  failed.gold_answers = {"right"};
  EXPECT_EQ(ComputeRewards(RewardOptionsFrom(*em_only), failed).total, 0);
  EXPECT_GT(ComputeRewards(d, failed).total, 0);

  auto bad =
      common::Config::Load(common::NbrlConfigSchema(), "", {"actor.reward.format=-1"});
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace nbrl::agent
