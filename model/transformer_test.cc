#include "model/transformer.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/layers.h"
#include "model/model_test_util.h"
#include "tests/testing/subprocess.h"

namespace nbrl::model {
namespace {

using testing::MaxAbsDiff;

constexpr char kPython[] = "/usr/bin/python3";

// Unpadded logits of one sequence [T, V].
torch::Tensor SingleLogits(Transformer& model, const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  torch::Tensor tokens = torch::tensor(ids).unsqueeze(0);
  return model.Logits(model.Forward(tokens, torch::ones_like(tokens, torch::kBool)))[0];
}

// Runs tests/reference/qwen2_reference.py on a checkpoint directory; returns the
// logits of each sequence, or skips when Debian's python3-torch is absent.
std::vector<torch::Tensor> ReferenceLogits(
    const std::string& dir, int64_t vocab,
    const std::vector<std::vector<int64_t>>& seqs) {
  std::ofstream(dir + "/input.json") << nlohmann::json{{"sequences", seqs}}.dump();
  const char* src = std::getenv("NBRL_SOURCE_DIR");
  const std::string script =
      std::string(src ? src : ".") + "/tests/reference/qwen2_reference.py";
  auto run = testutil::RunCommand(
      {kPython, script, dir, dir + "/input.json", dir + "/reference.bin"},
      absl::Seconds(120));
  EXPECT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  std::ifstream in(dir + "/reference.bin", std::ios::binary);
  std::vector<torch::Tensor> out;
  for (const auto& s : seqs) {
    torch::Tensor t = torch::empty({static_cast<int64_t>(s.size()), vocab});
    in.read(static_cast<char*>(t.data_ptr()), t.numel() * sizeof(float));
    EXPECT_TRUE(in.good());
    out.push_back(t);
  }
  return out;
}

bool PythonTorchAvailable() {
  auto run =
      testutil::RunCommand({kPython, "-c", "import torch, numpy"}, absl::Seconds(60));
  return run.ok() && run->exit_code == 0;
}

class ReferenceTest : public ::testing::TestWithParam<std::string> {};

// The independent check of the issue: logits of a random checkpoint we saved, as
// computed by a from-scratch Python implementation (float64), within 1e-4.
TEST_P(ReferenceTest, LogitsMatchIndependentPythonReference) {
  if (!PythonTorchAvailable()) {
    GTEST_SKIP() << kPython << " cannot import torch and numpy: install Debian's "
                 << "python3-torch and python3-numpy (deploy/setup.sh does) to run the "
                 << "independent reference check";
  }
  const ModelConfig config =
      GetParam() == "qwen2" ? testing::SmallQwen2Config() : testing::SmallLlamaConfig();
  auto model = testing::RandomModel(config, /*seed=*/11);
  const std::string dir = testing::TempDir("reference_" + GetParam());
  ASSERT_TRUE(SaveTransformer(*model, dir).ok());
  std::vector<std::vector<int64_t>> seqs = {
      {1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8}, {96, 0, 42}, {7}, {}};
  // Long enough for the attention's query blocks (kAttentionBlock).
  for (int64_t i = 0; i < 2 * kAttentionBlock + 37; ++i)
    seqs.back().push_back((i * 37 + 11) % config.vocab_size);
  std::vector<torch::Tensor> want = ReferenceLogits(dir, config.vocab_size, seqs);
  double worst = 0, spread = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    torch::Tensor got = SingleLogits(*model, seqs[i]);
    worst = std::max(worst, MaxAbsDiff(got, want[i]));
    spread = std::max(spread, want[i].abs().max().item<double>());
  }
  std::cout << "[ reference ] " << GetParam() << ": max |logit diff| = " << worst
            << " (max |logit| = " << spread << ")\n";
  EXPECT_GT(spread, 1.0);  // the logits are not trivially small
  EXPECT_LT(worst, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Families, ReferenceTest, ::testing::Values("qwen2", "llama"));

// Padding anywhere in a row changes nothing for the row's real tokens.
TEST(TransformerTest, PaddedBatchMatchesRowsAlone) {
  auto model = testing::RandomModel(testing::SmallQwen2Config());
  std::vector<int64_t> a = {4, 8, 15, 16, 23, 42}, b = {9, 9, 1};
  torch::Tensor tokens =
      torch::tensor({{4, 8, 15, 16, 23, 42}, {0, 0, 0, 9, 9, 1}, {9, 9, 1, 0, 0, 0}});
  torch::Tensor valid = tokens.clone().fill_(1).to(torch::kBool);
  valid[1].narrow(0, 0, 3).fill_(false);
  valid[2].narrow(0, 3, 3).fill_(false);
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model->Logits(model->Forward(tokens, valid));  // [3, 6, V]
  EXPECT_LT(MaxAbsDiff(logits[0], SingleLogits(*model, a)), 1e-5);
  EXPECT_LT(MaxAbsDiff(logits[1].narrow(0, 3, 3), SingleLogits(*model, b)), 1e-5);
  EXPECT_LT(MaxAbsDiff(logits[2].narrow(0, 0, 3), SingleLogits(*model, b)), 1e-5);
}

// Feeding a batch through the cache in uneven chunks gives the full-forward logits.
TEST(TransformerTest, CachedChunksMatchFullForward) {
  auto model = testing::RandomModel(testing::SmallQwen2Config());
  std::vector<std::vector<int64_t>> rows = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
                                            {11, 12, 13, 14, 15, 16, 17}};
  // Per step, how many new tokens each row gets (0: none this step).
  std::vector<std::vector<int64_t>> steps = {{3, 1}, {0, 4}, {1, 1}, {6, 0}, {0, 1}};
  KvCache cache = model->NewCache(2);
  std::vector<std::vector<torch::Tensor>> got(2);
  std::vector<int64_t> done = {0, 0};
  torch::NoGradGuard no_grad;
  for (const auto& step : steps) {
    const int64_t L = std::max(step[0], step[1]);
    torch::Tensor tokens = torch::zeros({2, L}, torch::kInt64);
    torch::Tensor valid = torch::zeros({2, L}, torch::kBool);
    for (int b = 0; b < 2; ++b) {
      for (int64_t i = 0; i < step[b]; ++i) {
        tokens[b][i] = rows[b][done[b] + i];
        valid[b][i] = true;
      }
    }
    torch::Tensor logits = model->Logits(model->Forward(tokens, valid, &cache));
    for (int b = 0; b < 2; ++b) {
      for (int64_t i = 0; i < step[b]; ++i) got[b].push_back(logits[b][i]);
      done[b] += step[b];
    }
  }
  EXPECT_EQ(cache.lengths(), std::vector<int64_t>({10, 7}));
  EXPECT_EQ(cache.num_slots(), 3 + 4 + 1 + 6 + 1);
  for (int b = 0; b < 2; ++b) {
    EXPECT_LT(MaxAbsDiff(torch::stack(got[b]), SingleLogits(*model, rows[b])), 1e-5)
        << b;
  }
  // Compacting squeezes out padding and changes no later result.
  cache.Compact();
  EXPECT_EQ(cache.num_slots(), 10);
  torch::Tensor next = torch::tensor({{20}, {21}});
  torch::Tensor logits =
      model->Logits(model->Forward(next, torch::ones({2, 1}, torch::kBool), &cache));
  rows[0].push_back(20);
  rows[1].push_back(21);
  EXPECT_LT(MaxAbsDiff(logits[0][0], SingleLogits(*model, rows[0])[10]), 1e-5);
  EXPECT_LT(MaxAbsDiff(logits[1][0], SingleLogits(*model, rows[1])[7]), 1e-5);
  // Clearing one row restarts it at position 0 and leaves the other alone.
  cache.ClearRow(1);
  logits = model->Logits(model->Forward(torch::tensor({{30}, {31}}),
                                        torch::ones({2, 1}, torch::kBool), &cache));
  rows[0].push_back(30);
  EXPECT_LT(MaxAbsDiff(logits[0][0], SingleLogits(*model, rows[0])[11]), 1e-5);
  EXPECT_LT(MaxAbsDiff(logits[1][0], SingleLogits(*model, {31})[0]), 1e-5);
}

// A chunk long enough for query blocks (kAttentionBlock), after a cached prefix or
// not, gives the logits of the same tokens fed in chunks too short for blocks, and
// padding inside a blocked chunk changes nothing for the real tokens.
TEST(TransformerTest, BlockedAttentionMatchesShortChunks) {
  auto model = testing::RandomModel(testing::SmallQwen2Config(), /*seed=*/5);
  const int64_t n = 2 * kAttentionBlock + 45, prefix = 70, pad = 33;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < prefix + n; ++i) ids.push_back((i * 53 + 7) % 97);
  torch::NoGradGuard no_grad;
  // Reference: chunks of 100 tokens through the cache, none of them blocked.
  std::vector<torch::Tensor> parts;
  {
    KvCache cache = model->NewCache(1);
    for (size_t b = 0; b < ids.size(); b += 100) {
      std::vector<int64_t> chunk(ids.begin() + b,
                                 ids.begin() + std::min(ids.size(), b + 100));
      torch::Tensor t = torch::tensor(chunk).unsqueeze(0);
      parts.push_back(model->Logits(
          model->Forward(t, torch::ones_like(t, torch::kBool), &cache))[0]);
    }
  }
  torch::Tensor want = torch::cat(parts, 0);  // [prefix + n, V]
  // The whole sequence in one blocked chunk, the second row left-padded.
  torch::Tensor all = torch::tensor(ids);
  torch::Tensor tokens = torch::zeros({2, pad + prefix + n}, torch::kInt64);
  torch::Tensor valid = torch::zeros({2, pad + prefix + n}, torch::kBool);
  tokens[0].narrow(0, 0, prefix + n).copy_(all);
  valid[0].narrow(0, 0, prefix + n).fill_(true);
  tokens[1].narrow(0, pad, prefix + n).copy_(all);
  valid[1].narrow(0, pad, prefix + n).fill_(true);
  torch::Tensor logits = model->Logits(model->Forward(tokens, valid));
  EXPECT_LT(MaxAbsDiff(logits[0].narrow(0, 0, prefix + n), want), 1e-4);
  EXPECT_LT(MaxAbsDiff(logits[1].narrow(0, pad, prefix + n), want), 1e-4);
  // A blocked chunk after a cached prefix.
  KvCache cache = model->NewCache(1);
  torch::Tensor head = all.narrow(0, 0, prefix).unsqueeze(0);
  model->Forward(head, torch::ones_like(head, torch::kBool), &cache);
  torch::Tensor tail = all.narrow(0, prefix, n).unsqueeze(0);
  torch::Tensor got =
      model->Logits(model->Forward(tail, torch::ones_like(tail, torch::kBool), &cache));
  EXPECT_LT(MaxAbsDiff(got[0], want.narrow(0, prefix, n)), 1e-4);
}

// A batched prefill wide enough for its scores to exceed kMaxScoreBlockBytes goes
// in blocks of queries (each row after its own cached, padded prefix) and gives
// every row the logits it has alone.
TEST(TransformerTest, WidePrefillInScoreBlocksMatchesRowsAlone) {
  const ModelConfig config = testing::SmallQwen2Config();
  auto model = testing::RandomModel(config, /*seed=*/9);
  const int64_t B = 16, prefix = 700, L = 200;
  ASSERT_GT(B * config.num_attention_heads * L * (prefix + L) * 4, kMaxScoreBlockBytes);
  std::vector<std::vector<int64_t>> rows(B);
  std::vector<int64_t> prefix_len(B), chunk_len(B);
  for (int64_t b = 0; b < B; ++b) {
    prefix_len[b] = prefix - 10 * b;
    chunk_len[b] = L - 7 * b;
    for (int64_t i = 0; i < prefix_len[b] + chunk_len[b]; ++i)
      rows[b].push_back((i * 31 + b * 17 + 5) % config.vocab_size);
  }
  torch::NoGradGuard no_grad;
  KvCache cache = model->NewCache(B);
  torch::Tensor logits;
  for (int step = 0; step < 2; ++step) {
    const int64_t width = step == 0 ? prefix : L;
    torch::Tensor tokens = torch::zeros({B, width}, torch::kInt64);
    torch::Tensor valid = torch::zeros({B, width}, torch::kBool);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t start = step == 0 ? 0 : prefix_len[b];
      const int64_t n = step == 0 ? prefix_len[b] : chunk_len[b];
      tokens[b].narrow(0, 0, n).copy_(torch::tensor(
          std::vector<int64_t>(rows[b].begin() + start, rows[b].begin() + start + n)));
      valid[b].narrow(0, 0, n).fill_(true);
    }
    logits = model->Logits(model->Forward(tokens, valid, &cache));  // [B, width, V]
  }
  for (int64_t b = 0; b < B; ++b) {
    torch::Tensor want =
        SingleLogits(*model, rows[b]).narrow(0, prefix_len[b], chunk_len[b]);
    EXPECT_LT(MaxAbsDiff(logits[b].narrow(0, 0, chunk_len[b]), want), 1e-4) << b;
  }
}

// The blocked attention's output and gradients (to the input and every weight)
// equal those of plain full-matrix causal attention written out here.
TEST(TransformerTest, BlockedAttentionGradientsMatchFullAttention) {
  const ModelConfig config = testing::SmallQwen2Config();
  torch::manual_seed(3);
  Attention attn(config);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (auto& p : attn->parameters()) {
    torch::NoGradGuard no_grad;
    p.normal_(0.0, 0.3, gen);  // an explicit generator: gcc -O1 (ASan) otherwise
                               // warns of an uninitialized optional<Generator>
  }
  const int64_t B = 2, L = 2 * kAttentionBlock + 19, H = config.num_attention_heads,
                KV = config.num_key_value_heads, hd = config.head_dim;
  torch::Tensor x = torch::randn({B, L, config.hidden_size}, torch::requires_grad());
  torch::Tensor positions = torch::arange(L).unsqueeze(0).expand({B, L});
  RotaryEmbedding rotary(hd, config.rope_theta, torch::kCPU);
  // Row 1 may not attend to its first 40 tokens' keys (as a packed tree might).
  torch::Tensor mask =
      torch::ones({L, L}, torch::kBool).tril().unsqueeze(0).repeat({B, 1, 1});
  mask[1].narrow(1, 0, 40).narrow(0, 40, L - 40).fill_(false);
  AttentionContext ctx;
  ctx.hidden = HiddenSlots(mask.view({B, 1, 1, L, L}));
  std::tie(ctx.cos, ctx.sin) = rotary.Tables(positions, torch::kFloat32);
  torch::Tensor got = attn->forward(x, ctx, 0);
  torch::Tensor w = torch::randn_like(got);
  auto grads = [&](const torch::Tensor& y) {
    std::vector<torch::Tensor> inputs = {x};
    for (auto& p : attn->parameters()) inputs.push_back(p);
    return torch::autograd::grad({(y * w).sum()}, inputs);
  };
  std::vector<torch::Tensor> got_grads = grads(got);
  // The reference: every query head against its KV head, the whole L x L matrix.
  auto params = attn->named_parameters();
  auto proj = [&](const std::string& name, int64_t heads) {
    return torch::nn::functional::linear(x, params[name + ".weight"],
                                         params[name + ".bias"])
        .view({B, L, heads, hd})
        .transpose(1, 2);
  };
  torch::Tensor q = ApplyRotary(proj("q_proj", H), ctx.cos, ctx.sin);
  torch::Tensor k =
      ApplyRotary(proj("k_proj", KV), ctx.cos, ctx.sin).repeat_interleave(H / KV, 1);
  torch::Tensor v = proj("v_proj", KV).repeat_interleave(H / KV, 1);
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(hd));
  scores = scores.masked_fill(mask.unsqueeze(1).logical_not(),
                              -std::numeric_limits<float>::infinity());
  torch::Tensor y = torch::matmul(torch::softmax(scores, -1), v)
                        .transpose(1, 2)
                        .reshape({B, L, H * hd});
  torch::Tensor want = torch::nn::functional::linear(y, params["o_proj.weight"]);
  EXPECT_LT(MaxAbsDiff(got, want), 1e-4);
  std::vector<torch::Tensor> want_grads = grads(want);
  ASSERT_EQ(got_grads.size(), want_grads.size());
  for (size_t i = 0; i < got_grads.size(); ++i) {
    const double scale = want_grads[i].abs().max().item<double>();
    EXPECT_GT(scale, 0.0) << i;
    EXPECT_LT(MaxAbsDiff(got_grads[i], want_grads[i]), 1e-4 * std::max(1.0, scale))
        << i;
  }
}

TEST(TransformerTest, OutOfRangeTokenThrowsAndLeavesTheCacheUsable) {
  auto model = testing::RandomModel(testing::SmallQwen2Config());
  KvCache cache = model->NewCache(1);
  torch::NoGradGuard no_grad;
  EXPECT_THROW(model->Forward(torch::tensor({{1000}}),
                              torch::ones({1, 1}, torch::kBool), &cache),
               c10::Error);
  EXPECT_EQ(cache.num_slots(), 0);
  torch::Tensor logits = model->Logits(
      model->Forward(torch::tensor({{5}}), torch::ones({1, 1}, torch::kBool), &cache));
  EXPECT_LT(MaxAbsDiff(logits[0][0], SingleLogits(*model, {5})[0]), 1e-6);
}

}  // namespace
}  // namespace nbrl::model
