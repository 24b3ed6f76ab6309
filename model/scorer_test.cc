#include "model/scorer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_test_util.h"
#include "model/sequence_batch.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;

class ScorerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Transformer> model_ =
      testing::RandomModel(testing::SmallQwen2Config());
};

// Generates a two-turn episode per row (prompt, action, observation, action) and
// returns the full sequences with, per token, the generation log-prob (NaN for
// tokens that were not generated).
struct Episode {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<std::vector<double>> gen_logprobs;
};

Episode GenerateEpisodes(Transformer* model, const SamplingOptions& o,
                         bool untruncated) {
  const std::vector<std::vector<int64_t>> prompts = {
      {1, 2, 3, 4, 5, 6, 7, 8, 9}, {10, 11}, {12, 13, 14, 15}};
  const std::vector<std::vector<int64_t>> observations = {
      {20, 21}, {22, 23, 24, 25}, {26}};
  auto batch = SequenceBatch::Create(model, 3);
  CHECK(batch.ok());
  Episode e;
  e.tokens = prompts;
  e.gen_logprobs.resize(3);
  for (int b = 0; b < 3; ++b) e.gen_logprobs[b].assign(prompts[b].size(), NAN);
  CHECK((*batch)->Append(prompts).ok());
  for (int turn = 0; turn < 2; ++turn) {
    SamplingOptions turn_options = o;
    turn_options.seed = o.seed + turn;
    auto g = (*batch)->Generate(turn_options);
    CHECK(g.ok()) << g.status();
    for (int b = 0; b < 3; ++b) {
      const auto& lp = untruncated ? (*g)[b].untruncated_logprobs : (*g)[b].logprobs;
      e.tokens[b].insert(e.tokens[b].end(), (*g)[b].tokens.begin(),
                         (*g)[b].tokens.end());
      e.gen_logprobs[b].insert(e.gen_logprobs[b].end(), lp.begin(), lp.end());
    }
    if (turn == 0) {
      CHECK((*batch)->Append(observations).ok());
      for (int b = 0; b < 3; ++b) {
        e.tokens[b].insert(e.tokens[b].end(), observations[b].begin(),
                           observations[b].end());
        e.gen_logprobs[b].insert(e.gen_logprobs[b].end(), observations[b].size(), NAN);
      }
    }
  }
  return e;
}

// Max |score - generation log-prob| over every generated token.
double MaxGap(const Episode& e, const torch::Tensor& scores) {
  double worst = 0;
  int64_t compared = 0;
  for (size_t b = 0; b < e.tokens.size(); ++b) {
    for (size_t t = 0; t < e.tokens[b].size(); ++t) {
      if (std::isnan(e.gen_logprobs[b][t])) continue;
      worst =
          std::max(worst, std::abs(scores[b][t].item<double>() - e.gen_logprobs[b][t]));
      ++compared;
    }
  }
  EXPECT_EQ(compared, 3 * 2 * 10);
  return worst;
}

// The requirement: scoring a generated sequence gives the generation
// log-probs at temperature 1 within 1e-4 (fp32), through a multi-turn episode.
TEST_F(ScorerTest, ScoresEqualGenerationLogprobsAtTemperatureOne) {
  SamplingOptions o;
  o.max_new_tokens = 10;
  o.seed = 21;
  Episode e = GenerateEpisodes(model_.get(), o, /*untruncated=*/false);
  PaddedBatch batch = PadSequences(e.tokens);
  auto scores = ScoreTokens(*model_, batch.tokens, batch.mask);
  ASSERT_TRUE(scores.ok()) << scores.status();
  const double gap = MaxGap(e, *scores);
  std::cout << "[ scoring ] max |score - generation logprob| at T=1: " << gap << "\n";
  EXPECT_LT(gap, 1e-4);
}

// At another temperature with top-k, scoring at that temperature gives the
// untruncated generation log-probs.
TEST_F(ScorerTest, ScoresAtTemperatureEqualUntruncatedLogprobs) {
  SamplingOptions o;
  o.max_new_tokens = 10;
  o.seed = 5;
  o.temperature = 0.7;
  o.top_k = 20;
  Episode e = GenerateEpisodes(model_.get(), o, /*untruncated=*/true);
  PaddedBatch batch = PadSequences(e.tokens);
  auto scores = ScoreTokens(*model_, batch.tokens, batch.mask, {/*temperature=*/0.7});
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_LT(MaxGap(e, *scores), 1e-4);
}

TEST_F(ScorerTest, LeftAndRightPaddingAgreeAndPaddingScoresZero) {
  torch::Tensor right = torch::tensor({{5, 6, 7, 8}, {9, 10, 0, 0}});
  torch::Tensor right_mask = right.ne(0);
  right_mask[1][2] = false;
  torch::Tensor left = torch::tensor({{5, 6, 7, 8}, {33, 33, 9, 10}});
  torch::Tensor left_mask =
      torch::tensor({{1, 1, 1, 1}, {0, 0, 1, 1}}).to(torch::kBool);
  auto r = ScoreTokens(*model_, right, right_mask);
  auto l = ScoreTokens(*model_, left, left_mask);
  ASSERT_TRUE(r.ok() && l.ok());
  EXPECT_LT(testing::MaxAbsDiff((*r)[0], (*l)[0]), 1e-5);
  EXPECT_NEAR((*r)[1][1].item<double>(), (*l)[1][3].item<double>(), 1e-5);
  EXPECT_EQ((*r)[1][0].item<float>(), 0.0f);  // first real token: nothing to predict it
  EXPECT_EQ((*r)[1][2].item<float>(), 0.0f);
  EXPECT_EQ((*l)[1][1].item<float>(), 0.0f);
  EXPECT_LT((*r)[0][1].item<float>(), 0.0f);
}

// Gradients reach every parameter, and match a finite difference on one weight.
TEST_F(ScorerTest, GradientsFlowToEveryParameter) {
  PaddedBatch batch = PadSequences({{1, 2, 3, 4, 5}, {6, 7, 8}});
  auto scores = ScoreTokens(*model_, batch.tokens, batch.mask);
  ASSERT_TRUE(scores.ok());
  EXPECT_TRUE(scores->requires_grad());
  torch::Tensor loss = -scores->sum();
  loss.backward();
  for (const auto& p : model_->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
  // Central difference on one entry of a middle weight, in double-checked fp32.
  torch::Tensor w = model_->StateDict().at("model.layers.0.mlp.up_proj.weight");
  const double analytic = w.grad()[3][5].item<double>();
  const float eps = 1e-2f;
  auto loss_at = [&](float delta) {
    torch::NoGradGuard no_grad;
    w[3][5] += delta;
    double value =
        -ScoreTokens(*model_, batch.tokens, batch.mask)->sum().item<double>();
    w[3][5] -= delta;
    return value;
  };
  const double numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
  EXPECT_NEAR(analytic, numeric, 2e-2 * std::max(1.0, std::abs(analytic)));
}

// The fused head against plain autograd (Logits, log_softmax, gather): values and
// the gradients of the hidden states and of every parameter of the head, tied and
// untied, at two temperatures, over several chunks (a large vocabulary makes the
// chunks 32 rows: 100 rows are 4 chunks, the last one partial).
TEST(TargetLogProbsTest, MatchesPlainAutogradAcrossChunks) {
  for (ModelConfig config :
       {testing::SmallQwen2Config(), testing::SmallLlamaConfig()}) {
    config.vocab_size = 70000;
    std::unique_ptr<Transformer> model = testing::RandomModel(config, 7);
    for (double temperature : {1.0, 0.7}) {
      SCOPED_TRACE(::testing::Message() << "tied " << config.tie_word_embeddings
                                        << " temperature " << temperature);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
      torch::Tensor hidden = torch::randn({4, 25, config.hidden_size}, gen);
      torch::Tensor targets = torch::randint(config.vocab_size, {4, 25}, gen);
      torch::Tensor upstream = torch::randn({4, 25}, gen);  // a non-uniform dL/dy

      auto run = [&](bool fused) {
        model->zero_grad();
        torch::Tensor h = hidden.clone().requires_grad_(true);
        torch::Tensor y;
        if (fused) {
          y = TargetLogProbs(*model, h, targets, temperature);
        } else {
          y = torch::log_softmax(model->Logits(h) / temperature, -1)
                  .gather(-1, targets.unsqueeze(-1))
                  .squeeze(-1);
        }
        (y * upstream).sum().backward();
        return std::make_tuple(y.detach(), h.grad(),
                               model->head_weight().grad().clone());
      };
      auto [y_fused, dh_fused, dw_fused] = run(true);
      auto [y_plain, dh_plain, dw_plain] = run(false);
      EXPECT_EQ(y_fused.sizes(), y_plain.sizes());
      EXPECT_LT(testing::MaxAbsDiff(y_fused, y_plain), 1e-5);
      EXPECT_LT(testing::MaxAbsDiff(dh_fused, dh_plain), 1e-5);
      EXPECT_LT(testing::MaxAbsDiff(dw_fused, dw_plain), 1e-5);
    }
  }
}

// Under NoGradGuard (the reference model's KL term) nothing is kept for a backward.
TEST(TargetLogProbsTest, WorksWithoutGradients) {
  std::unique_ptr<Transformer> model =
      testing::RandomModel(testing::SmallQwen2Config());
  torch::NoGradGuard no_grad;
  torch::Tensor y =
      TargetLogProbs(*model, torch::randn({3, 32}), torch::tensor({1, 2, 96}));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3}));
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE((y <= 0).all().item<bool>());
}

TEST_F(ScorerTest, BadInputsAreRejected) {
  torch::Tensor tokens = torch::tensor({{1, 2, 3, 4}});
  auto gap =
      ScoreTokens(*model_, tokens, torch::tensor({{1, 0, 1, 1}}).to(torch::kBool));
  EXPECT_EQ(gap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gap.status().message(), HasSubstr("contiguous"));
  auto shape = ScoreTokens(*model_, tokens, torch::ones({1, 3}, torch::kBool));
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  auto vocab =
      ScoreTokens(*model_, torch::tensor({{1, 97}}), torch::ones({1, 2}, torch::kBool));
  EXPECT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
  auto temp = ScoreTokens(*model_, tokens, torch::ones({1, 4}, torch::kBool), {0.0});
  EXPECT_EQ(temp.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nbrl::model
