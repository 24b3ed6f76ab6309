#include "agent/model_policy.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/bpe_trainer.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::agent {
namespace {

class ModelPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string corpus;
    for (int i = 0; i < 100; ++i) {
      absl::StrAppend(&corpus, "<think>look it up</think><code>print(", i,
                      ")</code>\n");
    }
    model::BpeTrainerOptions bo;
    bo.vocab_size = 320;
    auto files = model::TrainBpeTokenizer(corpus, bo);
    ASSERT_TRUE(files.ok());
    testutil::TempDir tmp("mp-tok-");  // loaded into memory, then removed
    const std::string& dir = tmp.path();
    ASSERT_TRUE(model::WriteTokenizerFiles(*files, dir).ok());
    auto tok = model::Tokenizer::Load(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
    model::ModelConfig c;
    c.vocab_size = tokenizer_->vocab_size();
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.max_position_embeddings = 512;
    model::TransformerOptions mo;
    mo.seed = 5;
    auto m = model::Transformer::Create(c, mo);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }

  std::unique_ptr<ModelPolicy> Policy(int episodes = 2, uint64_t seed = 1) {
    ModelPolicyOptions o;
    o.max_episodes = episodes;
    o.seed = seed;
    auto p = ModelPolicy::Create(model_.get(), tokenizer_.get(), o);
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }

  PolicyRequest Request(uint64_t id, const std::vector<int32_t>& ctx,
                        int max_new = 12) {
    PolicyRequest r;
    r.episode_id = id;
    r.context = ctx;
    r.max_new_tokens = max_new;
    return r;
  }

  std::unique_ptr<model::Tokenizer> tokenizer_;
  std::unique_ptr<model::Transformer> model_;
};

TEST_F(ModelPolicyTest, SamplesWithLogprobsAndIsDeterministicPerSeed) {
  std::vector<int32_t> a = tokenizer_->Encode("<think>look");
  std::vector<int32_t> b = tokenizer_->Encode("print(7)");
  auto p1 = Policy();
  auto p2 = Policy();
  std::vector<PolicyRequest> reqs = {Request(1, a), Request(2, b)};
  auto r1 = p1->Act(reqs);
  auto r2 = p2->Act(reqs);
  ASSERT_TRUE(r1.ok()) << r1.status();
  ASSERT_TRUE(r2.ok());
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ((*r1)[k].tokens, (*r2)[k].tokens);
    EXPECT_LE((*r1)[k].tokens.size(), 12u);
    EXPECT_EQ((*r1)[k].tokens.size(), (*r1)[k].logprobs.size());
    for (float lp : (*r1)[k].logprobs) EXPECT_LE(lp, 0.0f);
  }
}

TEST_F(ModelPolicyTest, ExtendedContextsComputeOnlyTheNewTokens) {
  auto p = Policy();
  p->set_version(4);
  std::vector<int32_t> ctx = tokenizer_->Encode("<think>look it up</think>");
  auto first = p->Act(std::vector<PolicyRequest>{Request(9, ctx)});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ((*first)[0].policy_version, 4u);
  int64_t after_first = p->context_tokens_computed();
  EXPECT_EQ(after_first, static_cast<int64_t>(ctx.size()));
  // Context 2 = context 1 + the action + an observation: only the new part counts.
  std::vector<int32_t> next = ctx;
  next.insert(next.end(), (*first)[0].tokens.begin(), (*first)[0].tokens.end());
  std::vector<int32_t> obs = tokenizer_->Encode("<output>7</output>");
  next.insert(next.end(), obs.begin(), obs.end());
  ASSERT_TRUE(p->Act(std::vector<PolicyRequest>{Request(9, next)}).ok());
  EXPECT_EQ(p->context_tokens_computed() - after_first,
            static_cast<int64_t>(obs.size()));
  // A context that shares only a prefix (the Notepad moved to the end) keeps the
  // prefix cached: the rest, plus the re-fed last prefix token, is computed.
  std::vector<int32_t> moved(next.begin(), next.begin() + 5);
  std::vector<int32_t> tail = tokenizer_->Encode("<notepad>facts</notepad>");
  moved.insert(moved.end(), tail.begin(), tail.end());
  int64_t before = p->context_tokens_computed();
  auto shared = p->Act(std::vector<PolicyRequest>{Request(9, moved)});
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(p->context_tokens_computed() - before,
            static_cast<int64_t>(tail.size()) + 1);
  // A context with nothing in common is computed whole.
  std::vector<int32_t> other = tokenizer_->Encode("print(99)");
  before = p->context_tokens_computed();
  ASSERT_TRUE(p->Act(std::vector<PolicyRequest>{Request(9, other)}).ok());
  EXPECT_EQ(p->context_tokens_computed() - before, static_cast<int64_t>(other.size()));
}

TEST_F(ModelPolicyTest, RowsAreLimitedAndFreedAtEpisodeEnd) {
  auto p = Policy(/*episodes=*/1);
  std::vector<int32_t> ctx = tokenizer_->Encode("print(1)");
  ASSERT_TRUE(p->Act(std::vector<PolicyRequest>{Request(1, ctx)}).ok());
  auto busy = p->Act(std::vector<PolicyRequest>{Request(2, ctx)});
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kResourceExhausted);
  p->EndEpisode(1);
  EXPECT_TRUE(p->Act(std::vector<PolicyRequest>{Request(2, ctx)}).ok());
  EXPECT_FALSE(
      p->Act(std::vector<PolicyRequest>{Request(2, ctx), Request(2, ctx)}).ok());
}

}  // namespace
}  // namespace nbrl::agent
