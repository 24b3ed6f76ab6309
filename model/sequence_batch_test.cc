#include "model/sequence_batch.h"

#include <ATen/CPUGeneratorImpl.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_test_util.h"

namespace nbrl::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<std::vector<int64_t>> kPrompts = {
    {1, 2, 3, 4, 5, 6, 7}, {8, 9}, {10, 11, 12, 13}};

SamplingOptions Sampling(uint64_t seed, int64_t max_new = 12) {
  SamplingOptions o;
  o.seed = seed;
  o.max_new_tokens = max_new;
  return o;
}

class SequenceBatchTest : public ::testing::Test {
 protected:
  std::unique_ptr<Transformer> model_ =
      testing::RandomModel(testing::SmallQwen2Config());

  std::vector<Generation> Run(const std::vector<std::vector<int64_t>>& prompts,
                              const SamplingOptions& o) {
    auto g = Generate(model_.get(), prompts, o);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? *g : std::vector<Generation>();
  }
};

TEST_F(SequenceBatchTest, SameSeedSameTokensOtherSeedOtherTokens) {
  auto a = Run(kPrompts, Sampling(5));
  auto b = Run(kPrompts, Sampling(5));
  auto c = Run(kPrompts, Sampling(6));
  ASSERT_EQ(a.size(), 3u);
  bool any_differs = false;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens);
    EXPECT_EQ(a[i].logprobs, b[i].logprobs);
    EXPECT_EQ(a[i].tokens.size(), 12u);
    EXPECT_EQ(a[i].finish_reason, FinishReason::kLength);
    any_differs |= a[i].tokens != c[i].tokens;
  }
  EXPECT_TRUE(any_differs);
}

// Greedy decoding in a batch of uneven prompts equals decoding each prompt alone.
TEST_F(SequenceBatchTest, BatchedGreedyMatchesEachPromptAlone) {
  SamplingOptions o = Sampling(0);
  o.temperature = 0;
  auto batched = Run(kPrompts, o);
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    auto alone = Run({kPrompts[i]}, o);
    EXPECT_EQ(batched[i].tokens, alone[0].tokens) << i;
    for (size_t t = 0; t < alone[0].tokens.size(); ++t) {
      EXPECT_NEAR(batched[i].untruncated_logprobs[t], alone[0].untruncated_logprobs[t],
                  1e-5);
      EXPECT_EQ(batched[i].logprobs[t], 0.0f);  // greedy: a point mass
    }
  }
}

TEST_F(SequenceBatchTest, StopsAtEosStopSequenceAndPredicate) {
  SamplingOptions o = Sampling(3, /*max_new=*/40);
  auto free_run = Run({kPrompts[0]}, o)[0].tokens;
  ASSERT_EQ(free_run.size(), 40u);

  SamplingOptions eos = o;
  eos.eos_ids = {free_run[4]};
  auto g = Run({kPrompts[0]}, eos)[0];
  EXPECT_EQ(g.finish_reason, FinishReason::kEos);
  const size_t first =
      std::find(free_run.begin(), free_run.end(), free_run[4]) - free_run.begin();
  EXPECT_EQ(g.tokens,
            std::vector<int64_t>(free_run.begin(), free_run.begin() + first + 1));

  SamplingOptions stop = o;
  stop.stop_sequences = {{free_run[6], free_run[7]}, {1000, 1001}};
  g = Run({kPrompts[0]}, stop)[0];
  EXPECT_EQ(g.finish_reason, FinishReason::kStopSequence);
  ASSERT_GE(g.tokens.size(), 2u);
  EXPECT_LE(g.tokens.size(), 8u);
  EXPECT_THAT(std::vector<int64_t>(g.tokens.end() - 2, g.tokens.end()),
              ElementsAre(free_run[6], free_run[7]));

  SamplingOptions pred = o;
  pred.stop_predicate = [](int64_t, const std::vector<int64_t>& ids) {
    return ids.size() == 3;
  };
  g = Run({kPrompts[0]}, pred)[0];
  EXPECT_EQ(g.finish_reason, FinishReason::kStopPredicate);
  EXPECT_EQ(g.tokens, std::vector<int64_t>(free_run.begin(), free_run.begin() + 3));
}

// Appending an observation extends the cache; the continuation equals generating
// from the whole context in a fresh batch.
TEST_F(SequenceBatchTest, MultiTurnAppendExtendsTheCache) {
  SamplingOptions o = Sampling(9, /*max_new=*/6);
  auto batch = SequenceBatch::Create(model_.get(), 2);
  ASSERT_TRUE(batch.ok());
  ASSERT_TRUE((*batch)->Append({kPrompts[0], kPrompts[1]}).ok());
  auto first = (*batch)->Generate(o);
  ASSERT_TRUE(first.ok()) << first.status();
  // The last sampled token of each row is not computed yet.
  EXPECT_EQ((*batch)->cached_tokens(0), 7 + 6 - 1);
  ASSERT_TRUE((*batch)->Append({{50, 51, 52}, {}}).ok());
  EXPECT_EQ((*batch)->cached_tokens(0), 7 + 6 + 3);
  EXPECT_EQ((*batch)->cached_tokens(1), 2 + 6);
  o.seed = 10;
  auto second = (*batch)->Generate(o, /*active=*/{true, false});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE((*second)[1].tokens.empty());
  EXPECT_EQ((*batch)->tokens(0).size(), 7u + 6 + 3 + 6);

  // The same context from scratch, alone (same seed, one active row).
  std::vector<int64_t> context = kPrompts[0];
  context.insert(context.end(), (*first)[0].tokens.begin(), (*first)[0].tokens.end());
  context.insert(context.end(), {50, 51, 52});
  auto fresh = Run({context}, o)[0];
  EXPECT_EQ((*second)[0].tokens, fresh.tokens);
  for (size_t t = 0; t < fresh.tokens.size(); ++t) {
    EXPECT_NEAR((*second)[0].logprobs[t], fresh.logprobs[t], 1e-5);
  }
}

TEST_F(SequenceBatchTest, ResetRebuildsATrimmedRow) {
  SamplingOptions o = Sampling(4, /*max_new=*/5);
  o.temperature = 0;
  auto batch = SequenceBatch::Create(model_.get(), 2);
  ASSERT_TRUE(batch.ok());
  ASSERT_TRUE((*batch)->Append({kPrompts[0], kPrompts[2]}).ok());
  ASSERT_TRUE((*batch)->Generate(o).ok());
  const std::vector<int64_t> trimmed = {3, 4, 5};
  ASSERT_TRUE((*batch)->Reset(0, trimmed).ok());
  EXPECT_EQ((*batch)->cached_tokens(0), 0);
  auto again = (*batch)->Generate(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].tokens, Run({trimmed}, o)[0].tokens);
  auto tokens1 = (*batch)->tokens(1);
  EXPECT_EQ(
      (*again)[1].tokens,
      Run({std::vector<int64_t>(tokens1.begin(), tokens1.end() - 5)}, o)[0].tokens);
}

TEST_F(SequenceBatchTest, RebuildingRowsWhileTheCacheCompactsStaysCorrect) {
  // Rows reset and rebuilt many times fill the cache with padding until a chunk
  // makes it compact itself in the middle of a forward; results must not change.
  SamplingOptions o = Sampling(6, /*max_new=*/4);
  o.temperature = 0;
  auto batch = SequenceBatch::Create(model_.get(), 2);
  ASSERT_TRUE(batch.ok());
  std::vector<int64_t> long_context;
  for (int i = 0; i < 40; ++i) long_context.push_back(1 + i % 50);
  ASSERT_TRUE((*batch)->Append({long_context, {7, 8, 9}}).ok());
  for (int round = 0; round < 6; ++round) {
    std::vector<int64_t> ctx(long_context.begin() + round, long_context.end());
    ASSERT_TRUE((*batch)->Reset(0, ctx).ok());
    auto got = (*batch)->Generate(o, {true, false});
    ASSERT_TRUE(got.ok()) << "round " << round << ": " << got.status();
    EXPECT_EQ((*got)[0].tokens, Run({ctx}, o)[0].tokens) << "round " << round;
  }
}

TEST_F(SequenceBatchTest, TruncatedRowIsExtendedLikeAFreshOne) {
  SamplingOptions o = Sampling(5, /*max_new=*/6);
  o.temperature = 0;
  auto batch = SequenceBatch::Create(model_.get(), 2);
  ASSERT_TRUE(batch.ok());
  std::vector<int64_t> prefix = {5, 6, 7, 8, 9, 10, 11};
  std::vector<int64_t> first = prefix;
  first.insert(first.end(), {20, 21, 22});
  ASSERT_TRUE((*batch)->Append({first, {3, 4}}).ok());
  ASSERT_TRUE((*batch)->Generate(o).ok());
  // Keep the shared prefix, then continue differently.
  ASSERT_TRUE((*batch)->Truncate(0, static_cast<int64_t>(prefix.size())).ok());
  EXPECT_LE((*batch)->cached_tokens(0), static_cast<int64_t>(prefix.size()));
  std::vector<int64_t> suffix = {30, 31, 32, 33};
  ASSERT_TRUE((*batch)->Append({suffix, {}}).ok());
  auto got = (*batch)->Generate(o, {true, false});
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<int64_t> fresh = prefix;
  fresh.insert(fresh.end(), suffix.begin(), suffix.end());
  EXPECT_EQ((*got)[0].tokens, Run({fresh}, o)[0].tokens);
  EXPECT_FALSE((*batch)->Truncate(0, 1000).ok());
}

TEST_F(SequenceBatchTest, BadRequestsAreRejected) {
  auto batch = SequenceBatch::Create(model_.get(), 2);
  ASSERT_TRUE(batch.ok());
  ASSERT_TRUE((*batch)->Append({{1, 2}, {}}).ok());
  auto empty_row = (*batch)->Generate(Sampling(0));
  EXPECT_EQ(empty_row.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(empty_row.status().message(), HasSubstr("row 1"));
  EXPECT_TRUE((*batch)->Generate(Sampling(0), {true, false}).ok());
  EXPECT_EQ((*batch)->Append({{1}}).code(), absl::StatusCode::kInvalidArgument);
  absl::Status vocab = (*batch)->Append({{97}, {}});
  EXPECT_EQ(vocab.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(vocab.message(), HasSubstr("97"));
  SamplingOptions bad = Sampling(0);
  bad.top_p = 0;
  EXPECT_EQ((*batch)->Generate(bad, {true, false}).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = Sampling(0);
  bad.temperature = -1;
  EXPECT_EQ((*batch)->Generate(bad, {true, false}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SequenceBatch::Create(model_.get(), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SequenceBatchLimitTest, RowsStopAtTheContextLimit) {
  ModelConfig config = testing::SmallQwen2Config();
  config.max_position_embeddings = 12;
  auto model = testing::RandomModel(config);
  auto batch = SequenceBatch::Create(model.get(), 2);
  ASSERT_TRUE(batch.ok());
  absl::Status too_long = (*batch)->Append({std::vector<int64_t>(13, 1), {}});
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.message(), HasSubstr("max_position_embeddings (12)"));
  ASSERT_TRUE((*batch)->Append({std::vector<int64_t>(9, 1), {1, 2}}).ok());
  auto g = (*batch)->Generate(Sampling(1, /*max_new=*/20));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)[0].finish_reason, FinishReason::kContextLimit);
  EXPECT_EQ((*g)[0].tokens.size(), 3u);
  EXPECT_EQ((*g)[1].tokens.size(), 10u);
  EXPECT_STREQ(FinishReasonName((*g)[1].finish_reason), "context_limit");
}

// The sampling distribution: temperature, then top-k, then top-p, renormalised.
TEST(SamplerTest, TopKAndTopPRenormalise) {
  const int64_t n = 2000;
  // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
  torch::Tensor probs = torch::tensor({0.5, 0.3, 0.15, 0.05});
  torch::Tensor logits = probs.log().to(torch::kFloat32).unsqueeze(0).expand({n, 4});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);

  SamplingOptions top_k;
  top_k.top_k = 2;
  SampledTokens s = SampleTokens(logits, top_k, gen);
  EXPECT_LE(s.tokens.max().item<int64_t>(), 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = s.tokens[i].item<int64_t>();
    EXPECT_NEAR(s.logprobs[i].item<float>(), std::log(probs[t].item<double>() / 0.8),
                1e-5);
    EXPECT_NEAR(s.untruncated_logprobs[i].item<float>(),
                std::log(probs[t].item<double>()), 1e-5);
  }
  // Roughly 5/8 of the draws are token 0.
  EXPECT_NEAR(s.tokens.eq(0).sum().item<double>() / n, 0.625, 0.05);

  // top_p 0.9: 0.5 + 0.3 < 0.9, so token 2 stays; token 3 goes.
  SamplingOptions top_p;
  top_p.top_p = 0.9;
  s = SampleTokens(logits, top_p, gen);
  EXPECT_LE(s.tokens.max().item<int64_t>(), 2);
  EXPECT_GT(s.tokens.eq(2).sum().item<int64_t>(), 0);
  const int64_t t = s.tokens[0].item<int64_t>();
  EXPECT_NEAR(s.logprobs[0].item<float>(), std::log(probs[t].item<double>() / 0.95),
              1e-5);

  // Temperature 2 flattens: p ∝ sqrt(probs).
  SamplingOptions warm;
  warm.temperature = 2;
  s = SampleTokens(logits, warm, gen);
  torch::Tensor flat = probs.sqrt() / probs.sqrt().sum();
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t k = s.tokens[i].item<int64_t>();
    EXPECT_NEAR(s.logprobs[i].item<float>(), std::log(flat[k].item<double>()), 1e-5);
  }
}

}  // namespace
}  // namespace nbrl::model
