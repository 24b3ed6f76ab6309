#include "learner/policy_loss.h"

#include <cmath>

#include "gtest/gtest.h"

namespace nbrl::learner {
namespace {

// Six tokens with chosen ratios and advantages; behaviour log-prob log(0.5).
//   ratio  1.0  1.5  0.5  0.5  5.0  20 (capped at 10)
//   adv    1    1    1   -1   -1    2
// pg     -1  -1.28 -0.5  0.8  3 (dual)  -2.56      clipped: tokens 1, 3, 5
struct Batch {
  PolicyLossInputs in;
  torch::Tensor logp_leaf;
};

Batch MakeBatch(std::vector<int64_t> actions = {0, 1, 2, 3, 4, 5}) {
  std::vector<double> ratios = {1.0, 1.5, 0.5, 0.5, 5.0, 20.0};
  std::vector<double> adv = {1, 1, 1, -1, -1, 2};
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor behaviour = torch::full({6}, std::log(0.5), opts);
  torch::Tensor logp = torch::tensor(ratios, opts).log() + behaviour;
  Batch b;
  b.logp_leaf = logp.clone().requires_grad_(true);
  b.in.logp = b.logp_leaf;
  b.in.logp_behaviour = behaviour;
  b.in.advantages = torch::tensor(adv, opts);
  b.in.action_index = torch::tensor(actions, torch::kInt64);
  return b;
}

PolicyLossOptions Options() {
  PolicyLossOptions o;
  o.clip_low = 0.2;
  o.clip_high = 0.28;
  o.dual_clip = 3.0;
  o.ratio_cap = 10.0;
  return o;
}

TEST(PolicyLossTest, ClipsDualClipAndTruncationMatchHandComputedValues) {
  Batch b = MakeBatch();
  auto r = PolicyLoss(Options(), b.in);
  ASSERT_TRUE(r.ok()) << r.status();
  const double expected = (-1 - 1.28 - 0.5 + 0.8 + 3 - 2.56) / 6;
  EXPECT_NEAR(r->loss.item<double>(), expected, 1e-12);
  EXPECT_NEAR(r->pg_loss, expected, 1e-12);
  EXPECT_NEAR(r->clip_fraction, 3.0 / 6, 1e-12);
  EXPECT_NEAR(r->dual_clip_fraction, 1.0 / 6, 1e-12);
  EXPECT_NEAR(r->ratio_max, 10.0, 1e-9);
  EXPECT_EQ(r->tokens, 6);
  EXPECT_EQ(r->actions, 6);

  // Gradients flow only through the unclipped branches: d(-A r)/dlogp = -A r.
  r->loss.backward();
  torch::Tensor g = b.logp_leaf.grad();
  EXPECT_NEAR(g[0].item<double>(), -1.0 / 6, 1e-12);
  EXPECT_NEAR(g[1].item<double>(), 0.0, 1e-12);  // clipped high
  EXPECT_NEAR(g[2].item<double>(), -0.5 / 6, 1e-12);
  EXPECT_NEAR(g[3].item<double>(), 0.0, 1e-12);  // clipped low, A < 0
  EXPECT_NEAR(g[4].item<double>(), 0.0, 1e-12);  // dual clip
  EXPECT_NEAR(g[5].item<double>(), 0.0, 1e-12);  // capped and clipped
}

TEST(PolicyLossTest, ActionMeanAveragesWithinActionsFirst) {
  Batch b = MakeBatch({0, 0, 0, 1, 1, 2});
  PolicyLossOptions o = Options();
  o.aggregation = "action-mean";
  auto r = PolicyLoss(o, b.in);
  ASSERT_TRUE(r.ok());
  const double expected = ((-1 - 1.28 - 0.5) / 3 + (0.8 + 3) / 2 + (-2.56)) / 3;
  EXPECT_NEAR(r->loss.item<double>(), expected, 1e-12);
  EXPECT_EQ(r->actions, 3);
}

TEST(PolicyLossTest, WithoutDualClipAndTruncation) {
  Batch b = MakeBatch();
  PolicyLossOptions o = Options();
  o.dual_clip = 0;
  o.ratio_cap = 0;
  auto r = PolicyLoss(o, b.in);
  ASSERT_TRUE(r.ok());
  // Token 4 keeps pg = 5; token 5 with ratio 20 is still clipped to -2.56.
  EXPECT_NEAR(r->loss.item<double>(), (-1 - 1.28 - 0.5 + 0.8 + 5 - 2.56) / 6, 1e-12);
  EXPECT_NEAR(r->ratio_max, 20.0, 1e-9);
}

TEST(PolicyLossTest, K3KlToTheReference) {
  Batch b = MakeBatch();
  b.in.advantages = torch::zeros({6}, torch::kFloat64);
  b.in.logp_reference = b.in.logp.detach() + std::log(2.0);
  PolicyLossOptions o = Options();
  o.kl_coef = 0.5;
  auto r = PolicyLoss(o, b.in);
  ASSERT_TRUE(r.ok());
  const double k3 = 2.0 - std::log(2.0) - 1.0;
  EXPECT_NEAR(r->kl, k3, 1e-12);
  EXPECT_NEAR(r->loss.item<double>(), 0.5 * k3, 1e-12);
}

TEST(PolicyLossTest, EntropyBonusLowersTheLoss) {
  Batch b = MakeBatch();
  b.in.entropy = torch::full({6}, 2.0, torch::kFloat64);
  PolicyLossOptions o = Options();
  o.entropy_coef = 0.01;
  auto with = PolicyLoss(o, b.in);
  auto without = PolicyLoss(Options(), MakeBatch().in);
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_NEAR(with->loss.item<double>(), without->loss.item<double>() - 0.02, 1e-12);
  EXPECT_DOUBLE_EQ(with->entropy, 2.0);
}

TEST(PolicyLossTest, BadInputsAreRejected) {
  Batch b = MakeBatch();
  PolicyLossInputs in = b.in;
  in.advantages = torch::zeros({5}, torch::kFloat64);
  EXPECT_EQ(PolicyLoss(Options(), in).status().code(),
            absl::StatusCode::kInvalidArgument);
  in = b.in;
  in.logp_behaviour = torch::full({6}, NAN, torch::kFloat64);
  EXPECT_FALSE(PolicyLoss(Options(), in).ok());
  PolicyLossOptions o = Options();
  o.dual_clip = 0.5;
  EXPECT_FALSE(PolicyLoss(o, b.in).ok());
  o = Options();
  o.aggregation = "seq-mean";
  EXPECT_FALSE(PolicyLoss(o, b.in).ok());
  in = PolicyLossInputs();
  EXPECT_FALSE(PolicyLoss(Options(), in).ok());
}

TEST(SftLossTest, MeanNegativeLogLikelihood) {
  auto logp = torch::tensor({-1.0, -2.0, -3.0}, torch::kFloat64).requires_grad_(true);
  auto loss = SftLoss(logp, torch::tensor({0, 0, 1}, torch::kInt64), "token-mean");
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(loss->item<double>(), 2.0, 1e-12);
  auto action = SftLoss(logp, torch::tensor({0, 0, 1}, torch::kInt64), "action-mean");
  ASSERT_TRUE(action.ok());
  EXPECT_NEAR(action->item<double>(), (1.5 + 3.0) / 2, 1e-12);
}

}  // namespace
}  // namespace nbrl::learner
