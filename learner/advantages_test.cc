#include "learner/advantages.h"

#include <cmath>

#include "gtest/gtest.h"

namespace nbrl::learner {
namespace {

TEST(AdvantagesTest, ReinforcePlusPlusDiscountsThenWhitensOverTheBatch) {
  AdvantageOptions o;
  o.gamma = 0.5;
  o.eps = 0;
  auto a = ComputeAdvantages(o, {{0, {1.0}}, {0, {0.0, 0.0, 1.0}}});
  ASSERT_TRUE(a.ok()) << a.status();
  // Returns: [1] and [0.25, 0.5, 1]; mean 0.6875, std sqrt(0.10546875).
  const double mean = 0.6875, std = std::sqrt(0.10546875);
  EXPECT_NEAR((*a)[0][0], (1 - mean) / std, 1e-12);
  EXPECT_NEAR((*a)[1][0], (0.25 - mean) / std, 1e-12);
  EXPECT_NEAR((*a)[1][1], (0.5 - mean) / std, 1e-12);
  EXPECT_NEAR((*a)[1][2], (1 - mean) / std, 1e-12);
}

TEST(AdvantagesTest, GammaOneSumsTheRemainingRewards) {
  AdvantageOptions o;
  o.gamma = 1.0;
  o.eps = 0;
  auto a = ComputeAdvantages(o, {{0, {0.1, 0.1, 1.0}}, {0, {0.1, 0.0}}});
  ASSERT_TRUE(a.ok());
  // Returns 1.2, 1.1, 1.0 and 0.1, 0.0: ordering is kept after whitening.
  EXPECT_GT((*a)[0][0], (*a)[0][1]);
  EXPECT_GT((*a)[0][2], (*a)[1][0]);
  EXPECT_GT((*a)[1][0], (*a)[1][1]);
}

TEST(AdvantagesTest, GrpoUsesTheGroupBaseline) {
  AdvantageOptions o;
  o.estimator = "grpo";
  o.eps = 0;
  auto a = ComputeAdvantages(
      o, {{0, {0.5, 0.5}}, {0, {0.0}}, {0, {0.0}}, {0, {1.0}}, {1, {1.0}}, {1, {1.0}}});
  ASSERT_TRUE(a.ok());
  // Group 0 totals 1, 0, 0, 1: mean 0.5, std 0.5.
  EXPECT_DOUBLE_EQ((*a)[0][0], 1.0);
  EXPECT_DOUBLE_EQ((*a)[0][1], 1.0);  // every action of the trajectory
  EXPECT_DOUBLE_EQ((*a)[1][0], -1.0);
  EXPECT_DOUBLE_EQ((*a)[3][0], 1.0);
  // An all-equal group carries no signal.
  EXPECT_DOUBLE_EQ((*a)[4][0], 0.0);
  o.grpo_scale = false;
  auto unscaled = ComputeAdvantages(o, {{0, {1.0}}, {0, {0.0}}});
  ASSERT_TRUE(unscaled.ok());
  EXPECT_DOUBLE_EQ((*unscaled)[0][0], 0.5);
}

TEST(AdvantagesTest, NegativeScaleShrinksOnlyTheNegativeAdvantages) {
  // A GRPO group of rewards {1, 0, 0, 0}: mean 0.25, std sqrt(3)/4.
  AdvantageOptions o;
  o.estimator = "grpo";
  auto adv =
      ComputeAdvantages(o, {{0, {1.0}}, {0, {0.0, 0.0}}, {0, {0.0}}, {0, {0.0}}});
  ASSERT_TRUE(adv.ok());
  const double std = std::sqrt(3.0) / 4;
  ScaleNegativeAdvantages(0.25, &*adv);
  EXPECT_NEAR((*adv)[0][0], 0.75 / std, 1e-5);
  EXPECT_NEAR((*adv)[1][0], -0.25 * 0.25 / std, 1e-5);
  EXPECT_NEAR((*adv)[1][1], -0.25 * 0.25 / std, 1e-5);
  ScaleNegativeAdvantages(0.0, &*adv);
  EXPECT_NEAR((*adv)[0][0], 0.75 / std, 1e-5);
  EXPECT_EQ((*adv)[3][0], 0.0);
  std::vector<std::vector<double>> same = {{-1.0, 2.0}};
  ScaleNegativeAdvantages(1.0, &same);
  EXPECT_EQ(same[0][0], -1.0);
}

TEST(AdvantagesTest, BadInputIsRejected) {
  AdvantageOptions o;
  EXPECT_FALSE(ComputeAdvantages(o, {{0, {}}}).ok());
  EXPECT_FALSE(ComputeAdvantages(o, {{0, {NAN}}}).ok());
  o.gamma = 1.5;
  EXPECT_FALSE(ComputeAdvantages(o, {{0, {1}}}).ok());
  o = AdvantageOptions();
  o.estimator = "gae";
  EXPECT_EQ(ComputeAdvantages(o, {{0, {1}}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ComputeAdvantages(AdvantageOptions(), {})->empty());
}

}  // namespace
}  // namespace nbrl::learner
