#include "learner/trainer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "model/scorer.h"

namespace nbrl::learner {
namespace {

model::ModelConfig TinyConfig() {
  model::ModelConfig c;
  c.vocab_size = 48;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 256;
  return c;
}

std::unique_ptr<model::Transformer> TinyModel(uint64_t seed = 7) {
  model::TransformerOptions o;
  o.seed = seed;
  o.init_std = 0.1;
  auto m = model::Transformer::Create(TinyConfig(), o);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// A one-step trajectory: context `ctx`, action `act`, total reward `reward`.
v1::Trajectory Traj(const std::string& id, std::vector<uint32_t> ctx,
                    std::vector<uint32_t> act, float reward, float behaviour = -3.0f) {
  v1::Trajectory t;
  t.set_trajectory_id(id);
  for (uint32_t x : ctx) {
    t.add_token_ids(x);
    t.add_behavior_logprobs(0);
  }
  for (uint32_t x : act) {
    t.add_token_ids(x);
    t.add_behavior_logprobs(behaviour);
  }
  v1::Step* s = t.add_steps();
  s->add_context()->set_end(static_cast<uint32_t>(ctx.size()));
  s->mutable_action()->set_begin(static_cast<uint32_t>(ctx.size()));
  s->mutable_action()->set_end(static_cast<uint32_t>(ctx.size() + act.size()));
  s->set_reward(reward);
  t.set_total_reward(reward);
  t.set_ending_reason(v1::ENDING_REASON_SUBMITTED);
  return t;
}

v1::TrajectoryGroup Group(const std::string& id, std::vector<v1::Trajectory> ts) {
  v1::TrajectoryGroup g;
  g.set_group_id(id);
  g.set_actor_id("a");
  for (auto& t : ts) *g.add_trajectories() = t;
  return g;
}

// Mean log-prob the model gives to the action tokens of a one-step trajectory.
double ActionLogp(model::Transformer& m, const v1::Trajectory& t) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> seq(t.token_ids().begin(), t.token_ids().end());
  auto batch = model::PadSequences({seq});
  auto logp = model::ScoreTokens(m, batch.tokens, batch.mask);
  EXPECT_TRUE(logp.ok());
  const auto& a = t.steps(0).action();
  return (*logp)[0].slice(0, a.begin(), a.end()).mean().item<double>();
}

TEST(TrainerTest, SftLowersTheLossOnItsData) {
  auto m = TinyModel();
  TrainerOptions o;
  o.mode = "sft";
  o.lr = 3e-3;
  auto trainer = Trainer::Create(m.get(), nullptr, nullptr, o);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  std::vector<v1::TrajectoryGroup> batch = {Group(
      "g0", {Traj("t0", {1, 2, 3}, {4, 5, 6, 7}, 1), Traj("t1", {1, 9}, {10, 11}, 1)})};
  auto first = (*trainer)->Step(batch);
  ASSERT_TRUE(first.ok()) << first.status();
  double last = first->loss;
  for (int i = 0; i < 30; ++i) {
    auto s = (*trainer)->Step(batch);
    ASSERT_TRUE(s.ok());
    last = s->loss;
  }
  EXPECT_LT(last, first->loss * 0.5);
  EXPECT_EQ((*trainer)->step(), 31);
  EXPECT_EQ(first->tokens, 6);
  EXPECT_EQ(first->actions, 2);
}

// The notebook layout: each step's context is the prompt, the kept history and a
// fresh Notepad, so contexts are not prefixes of each other. Packed scoring (one
// row per trajectory, a prefix tree over spans) must equal scoring each action
// with its own context.
TEST(TrainerTest, PackedScoringEqualsPerActionScoring) {
  // Pool: P [1 2 3], N1 [4], A1 [5 6], O1 [7 8], H1 [9], N2 [10], A2 [11 12 13].
  v1::Trajectory two;
  two.set_trajectory_id("two");
  for (uint32_t x = 1; x <= 13; ++x) {
    two.add_token_ids(x);
    two.add_behavior_logprobs(-1.0f);
  }
  auto span = [](v1::TokenSpan* s, uint32_t b, uint32_t e) {
    s->set_begin(b);
    s->set_end(e);
  };
  v1::Step* s0 = two.add_steps();
  span(s0->add_context(), 0, 3);
  span(s0->add_context(), 3, 4);
  span(s0->mutable_action(), 4, 6);
  v1::Step* s1 = two.add_steps();
  for (auto [b, e] : {std::pair{0, 3}, {8, 9}, {4, 6}, {6, 8}, {9, 10}}) {
    span(s1->add_context(), b, e);
  }
  span(s1->mutable_action(), 10, 13);
  two.set_ending_reason(v1::ENDING_REASON_SUBMITTED);
  // The same two actions, each with its own context, as one-step trajectories.
  auto first = Traj("a", {1, 2, 3, 4}, {5, 6}, 0, -1.0f);
  auto second = Traj("b", {1, 2, 3, 9, 5, 6, 7, 8, 10}, {11, 12, 13}, 0, -1.0f);

  TrainerOptions o;
  o.mode = "sft";
  o.lr = 1e-2;
  auto ma = TinyModel(), mb = TinyModel();
  auto ta = Trainer::Create(ma.get(), nullptr, nullptr, o);
  auto tb = Trainer::Create(mb.get(), nullptr, nullptr, o);
  ASSERT_TRUE(ta.ok() && tb.ok());
  // Before any step: the packed log-probs equal the separately scored ones.
  const double direct = (ActionLogp(*mb, first) * 2 + ActionLogp(*mb, second) * 3) / 5;
  auto packed = (*ta)->Step({Group("g", {two})});
  auto split = (*tb)->Step({Group("g", {first, second})});
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(packed->tokens, 5);
  EXPECT_EQ(packed->actions, 2);
  EXPECT_NEAR(packed->loss, -direct, 1e-5);
  EXPECT_NEAR(packed->loss, split->loss, 1e-5);
  model::TensorMap a = ma->StateDict(), b = mb->StateDict();
  for (const auto& [name, t] : a) {
    // Adam divides by the gradient's scale: float noise in tiny gradients shows up
    // as ~1e-5 differences; a wrong score would move weights by ~lr (1e-2).
    EXPECT_TRUE(torch::allclose(t, b.at(name), 0, 2e-4))
        << name << " max diff " << (t - b.at(name)).abs().max().item<double>();
  }
}

TEST(TrainerTest, PolicyGradientMovesTowardRewardedActions) {
  auto m = TinyModel();
  TrainerOptions o;
  o.lr = 1e-2;
  o.advantages.estimator = "grpo";
  auto good = Traj("good", {1, 2, 3}, {20, 21, 22}, 1.0f);
  auto bad = Traj("bad", {1, 2, 3}, {30, 31, 32}, 0.0f);
  // Behaviour log-probs equal to the current ones: ratio 1, no clipping.
  auto set_behaviour = [&](v1::Trajectory& t) {
    torch::NoGradGuard ng;
    std::vector<int64_t> seq(t.token_ids().begin(), t.token_ids().end());
    auto b = model::PadSequences({seq});
    auto lp = *model::ScoreTokens(*m, b.tokens, b.mask);
    for (int i = 3; i < 6; ++i) t.set_behavior_logprobs(i, lp[0][i].item<float>());
  };
  set_behaviour(good);
  set_behaviour(bad);
  double good_before = ActionLogp(*m, good), bad_before = ActionLogp(*m, bad);
  auto trainer = Trainer::Create(m.get(), nullptr, nullptr, o);
  ASSERT_TRUE(trainer.ok());
  auto s = (*trainer)->Step({Group("g", {good, bad})});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(ActionLogp(*m, good), good_before);
  EXPECT_LT(ActionLogp(*m, bad), bad_before);
  EXPECT_NEAR(s->clip_fraction, 0.0, 1e-9);
  EXPECT_NEAR(s->reward_mean, 0.5, 1e-9);
}

// Actions sampled at temperature 0.5 carry log-probs of softmax(logits / 0.5). A
// trainer at the same temperature sees ratio 1 (no clip even with a tiny clip range);
// one scoring at temperature 1 sees other ratios and clips.
TEST(TrainerTest, ScoresAtTheSamplingTemperature) {
  auto clip_fraction_at = [](double trainer_temperature) {
    auto m = TinyModel();
    auto good = Traj("good", {1, 2, 3}, {20, 21, 22, 23}, 1.0f);
    auto bad = Traj("bad", {1, 2, 3}, {30, 31, 32, 33}, 0.0f);
    for (v1::Trajectory* t : {&good, &bad}) {
      torch::NoGradGuard ng;
      std::vector<int64_t> seq(t->token_ids().begin(), t->token_ids().end());
      auto b = model::PadSequences({seq});
      model::ScoreOptions so;
      so.temperature = 0.5;
      auto lp = *model::ScoreTokens(*m, b.tokens, b.mask, so);
      for (int i = 3; i < 7; ++i) t->set_behavior_logprobs(i, lp[0][i].item<float>());
    }
    TrainerOptions o;
    o.lr = 1e-3;
    o.advantages.estimator = "grpo";
    o.loss.clip_low = 1e-3;
    o.loss.clip_high = 1e-3;
    o.temperature = trainer_temperature;
    auto trainer = Trainer::Create(m.get(), nullptr, nullptr, o);
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    auto s = (*trainer)->Step({Group("g", {good, bad})});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->clip_fraction : -1.0;
  };
  EXPECT_NEAR(clip_fraction_at(0.5), 0.0, 1e-9);
  EXPECT_GT(clip_fraction_at(1.0), 0.0);

  auto m = TinyModel();
  TrainerOptions bad;
  bad.temperature = 0;
  EXPECT_FALSE(Trainer::Create(m.get(), nullptr, nullptr, bad).ok());
}

TEST(TrainerTest, WarmupAndCosineSchedule) {
  auto m = TinyModel();
  TrainerOptions o;
  o.lr = 1.0;
  o.warmup_steps = 4;
  o.schedule = "cosine";
  o.total_steps = 14;
  auto t = Trainer::Create(m.get(), nullptr, nullptr, o);
  ASSERT_TRUE(t.ok());
  EXPECT_DOUBLE_EQ((*t)->LearningRate(0), 0.25);
  EXPECT_DOUBLE_EQ((*t)->LearningRate(3), 1.0);
  EXPECT_NEAR((*t)->LearningRate(4), 1.0, 1e-12);
  EXPECT_NEAR((*t)->LearningRate(14), 0.1, 1e-12);
  o.mode = "dpo";
  EXPECT_FALSE(Trainer::Create(m.get(), nullptr, nullptr, o).ok());
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(TrainerTest, TwoRanksTakeTheSameStepAsOne) {
  std::vector<v1::TrajectoryGroup> all = {
      Group("g0", {Traj("a", {1, 2}, {3, 4, 5}, 1.0f, -2.5f),
                   Traj("b", {1, 2}, {6, 7}, 0.0f, -3.1f)}),
      Group("g1", {Traj("c", {8, 9, 10}, {11}, 0.5f, -1.0f),
                   Traj("d", {8}, {12, 13, 14, 15}, 0.2f, -4.0f)}),
      Group("g2", {Traj("e", {16}, {17, 18}, 0.9f, -2.0f),
                   Traj("f", {16, 19}, {20}, 0.1f, -0.7f)}),
  };
  TrainerOptions o;
  o.lr = 1e-2;
  o.microbatch_tokens = 12;  // several microbatches per rank
  o.loss.kl_coef = 0;
  // One rank, whole batch.
  auto single = TinyModel();
  {
    auto t = Trainer::Create(single.get(), nullptr, nullptr, o);
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE((*t)->Step(all).ok());
  }
  // Two ranks: rank 0 gets g0 and g1, rank 1 gets g2; rank 1 starts from other
  // weights, which the trainer's broadcast replaces.
  const int port = FreePort();
  std::vector<std::unique_ptr<model::Transformer>> models;
  models.push_back(TinyModel(7));
  models.push_back(TinyModel(99));
  std::vector<absl::Status> results(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      DataParallelOptions dpo;
      dpo.rank = r;
      dpo.world_size = 2;
      dpo.store_port = port;
      dpo.timeout = absl::Seconds(60);
      auto dp = DataParallel::Create(dpo);
      if (!dp.ok()) {
        results[r] = dp.status();
        return;
      }
      auto t = Trainer::Create(models[r].get(), nullptr, dp->get(), o);
      if (!t.ok()) {
        results[r] = t.status();
        return;
      }
      std::vector<v1::TrajectoryGroup> mine =
          r == 0 ? std::vector<v1::TrajectoryGroup>{all[0], all[1]}
                 : std::vector<v1::TrajectoryGroup>{all[2]};
      results[r] = (*t)->Step(mine).status();
    });
  }
  for (auto& t : ranks) t.join();
  ASSERT_TRUE(results[0].ok()) << results[0];
  ASSERT_TRUE(results[1].ok()) << results[1];
  auto expected = single->StateDict();
  for (int r = 0; r < 2; ++r) {
    auto got = models[r]->StateDict();
    for (const auto& [name, t] : expected) {
      // A key bias adds the same q.b to every score of a query, which softmax
      // ignores: its gradient is rounding noise (~1e-9), and AdamW's first step,
      // lr * g / (|g| + eps), turns noise into updates of a fraction of lr that
      // depend on the order of the sums. It is not part of the update compared.
      if (absl::EndsWith(name, "k_proj.bias")) continue;
      double diff = (got[name] - t).abs().max().item<double>();
      EXPECT_LT(diff, 1e-5) << "rank " << r << " " << name;
    }
  }
}

}  // namespace
}  // namespace nbrl::learner
