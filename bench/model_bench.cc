// nbrl-model-bench: our transformer against the same model in eager python3-torch
// (bench/model_peer.py), side by side on one machine, plus training FLOP/s as a
// fraction of plain GEMMs of the same shapes.
//
//   build/bench/nbrl-model-bench [--preset small|512|quickstart] [--rounds N]
//                                [--json-dir DIR] [--only generate|train]
//                                [--train-batch N] [--train-seq N]
//
// Figures: generation tokens/s at batch 1, 8 and 32 (prefill of a PROMPT-token
// prompt plus NEW sampled tokens, temperature 1, over the batch), a training step's
// tokens/s (teacher-forced log-probs, loss, backward, AdamW), and the training
// step's model FLOP/s over the FLOP/s of its GEMMs run alone.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/harness.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "model/checkpoint.h"
#include "model/fused_adamw.h"
#include "model/scorer.h"
#include "model/sequence_batch.h"

namespace nbrl::bench {
namespace {

using model::ModelConfig;
using model::Transformer;

struct BenchOptions {
  std::string preset = "small";
  int rounds = 3;
  std::string json_dir;
  int64_t prompt = 32, new_tokens = 32;      // generation
  int64_t train_batch = 4, train_seq = 256;  // training step
  std::string only;                          // "", "generate" or "train"
  std::string profile;  // a Chrome trace of one training step goes here
};

ModelConfig Preset(const std::string& name) {
  ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 8192;
  c.num_hidden_layers = 4;
  c.max_position_embeddings = 4096;
  c.rope_theta = 1e6;
  c.tie_word_embeddings = true;
  if (name == "512") {
    c.hidden_size = 512, c.intermediate_size = 1408, c.num_attention_heads = 8;
  } else if (name == "quickstart") {
    // deploy/quickstart.sh's model: tiny layers, long notebook episodes.
    c.vocab_size = 2048, c.num_hidden_layers = 2, c.tie_word_embeddings = false;
    c.hidden_size = 128, c.intermediate_size = 512, c.num_attention_heads = 4;
  } else {
    c.hidden_size = 256, c.intermediate_size = 704, c.num_attention_heads = 4;
  }
  c.num_key_value_heads = 2;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

double Seconds(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<std::vector<int64_t>> RandomPrompts(int64_t batch, int64_t len,
                                                int64_t vocab, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor ids = torch::randint(vocab, {batch, len}, gen, torch::kInt64);
  std::vector<std::vector<int64_t>> out(batch);
  for (int64_t b = 0; b < batch; ++b) {
    out[b].assign(ids[b].data_ptr<int64_t>(), ids[b].data_ptr<int64_t>() + len);
  }
  return out;
}

Probe GenerateProbe(Transformer* model, int64_t batch, const BenchOptions& o) {
  return [=]() -> absl::StatusOr<double> {
    auto prompts = RandomPrompts(batch, o.prompt, model->config().vocab_size, 1);
    model::SamplingOptions s;
    s.max_new_tokens = o.new_tokens;
    absl::Status status;
    double t = Seconds([&] {
      auto g = model::Generate(model, prompts, s);
      status = g.status();
    });
    RETURN_IF_ERROR(status);
    return batch * o.new_tokens / t;
  };
}

// One training step: forward (teacher-forced log-probs), loss, backward, AdamW,
// gradients dropped. The .item() at the end is the host sync.
absl::Status TrainStep(Transformer* model, model::FusedAdamW* opt,
                       const torch::Tensor& tokens, const torch::Tensor& mask) {
  ASSIGN_OR_RETURN(torch::Tensor logp, model::ScoreTokens(*model, tokens, mask));
  torch::Tensor loss = -logp.sum() / (tokens.numel() - tokens.size(0));
  loss.backward();
  opt->step();
  opt->ClearGradients();
  (void)loss.item<float>();
  return absl::OkStatus();
}

Probe TrainProbe(Transformer* model, model::FusedAdamW* opt, const BenchOptions& o) {
  return [=]() -> absl::StatusOr<double> {
    auto prompts =
        RandomPrompts(o.train_batch, o.train_seq, model->config().vocab_size, 2);
    model::PaddedBatch batch = model::PadSequences(prompts);
    absl::Status status;
    double t =
        Seconds([&] { status = TrainStep(model, opt, batch.tokens, batch.mask); });
    RETURN_IF_ERROR(status);
    return o.train_batch * o.train_seq / t;
  };
}

// Model FLOPs of one training step: 6 per parameter per token for the matmuls
// (embedding lookups excluded, the tied head included) plus attention scores and
// values, 12 * layers * T * (H * hd) per token (full, unmasked matrices as computed).
double TrainingFlops(const ModelConfig& c, int64_t B, int64_t T) {
  const double matmul_params =
      model::ParameterCount(c) - c.vocab_size * c.hidden_size +
      (c.tie_word_embeddings ? c.vocab_size * c.hidden_size : 0);
  const double tokens = B * T;
  const double attention =
      12.0 * c.num_hidden_layers * T * c.num_attention_heads * c.head_dim;
  return tokens * (6.0 * matmul_params + attention);
}

// FLOP/s of plain GEMMs with the shapes of the step's linear layers: per weight
// [out, in], the forward [M, in] x [in, out] and the two backward products, M = B*T.
Probe GemmProbe(const ModelConfig& c, int64_t M) {
  std::vector<std::pair<int64_t, int64_t>> weights;  // (out, in) of each layer + head
  const int64_t d = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim, f = c.intermediate_size;
  for (auto w : {std::pair{q, d}, {kv, d}, {kv, d}, {d, q}, {f, d}, {f, d}, {d, f}}) {
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) weights.push_back(w);
  }
  weights.push_back({c.vocab_size, d});
  auto operands = std::make_shared<std::vector<std::array<torch::Tensor, 2>>>();
  double flops = 0;
  for (auto [out, in] : weights) {
    torch::Tensor x = torch::randn({M, in}), w = torch::randn({in, out}),
                  g = torch::randn({M, out});
    operands->push_back({x, w});
    operands->push_back({g, w.t()});
    operands->push_back({x.t(), g});
    flops += 3 * 2.0 * M * in * out;
  }
  return [operands, flops]() -> absl::StatusOr<double> {
    double t = Seconds([&] {
      for (auto& [a, b] : *operands) (void)torch::mm(a, b);
    });
    return flops / t / 1e9;
  };
}

absl::Status Report(const SideBySideResult& r, const BenchOptions& o) {
  std::cout << FormatResult(r);
  if (!o.json_dir.empty()) {
    RETURN_IF_ERROR(
        WriteResultJson(r, absl::StrCat(o.json_dir, "/", r.options.name, ".json")));
  }
  return absl::OkStatus();
}

absl::Status Run(const BenchOptions& o) {
  const ModelConfig config = Preset(o.preset);
  model::TransformerOptions topts;
  topts.seed = 3;
  ASSIGN_OR_RETURN(std::unique_ptr<Transformer> model,
                   Transformer::Create(config, topts));
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("nbrl_model_bench_" + o.preset))
          .string();
  RETURN_IF_ERROR(model::SaveTransformer(*model, dir));
  const char* src = std::getenv("NBRL_SOURCE_DIR");
  const std::string peer =
      absl::StrCat("/usr/bin/python3 ", src ? src : NBRL_DEFAULT_SOURCE_DIR,
                   "/bench/model_peer.py ");
  std::cout << "model: preset " << o.preset << ", hidden " << config.hidden_size << ", "
            << config.num_hidden_layers << " layers, " << config.num_attention_heads
            << " heads / " << config.num_key_value_heads << " KV, vocab "
            << config.vocab_size << ", " << model::ParameterCount(config)
            << " parameters; libtorch threads " << at::get_num_threads() << "\n";

  SideBySideOptions s;
  s.rounds = o.rounds;
  s.unit = "tokens/s";
  s.higher_is_better = true;
  s.baseline_label = "python3-torch";
  for (int64_t batch : {1, 8, 32}) {
    if (o.only == "train") break;
    s.name = absl::StrCat("model_", o.preset, "_generate_b", batch);
    ASSIGN_OR_RETURN(
        SideBySideResult r,
        RunSideBySide(s, GenerateProbe(model.get(), batch, o),
                      CommandProbe(absl::StrCat(peer, "generate ", dir, " ", batch, " ",
                                                o.prompt, " ", o.new_tokens))));
    RETURN_IF_ERROR(Report(r, o));
  }
  if (o.only == "generate") return absl::OkStatus();
  model::FusedAdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-4));
  if (!o.profile.empty()) {
    // libtorch's profiler over one step after three warm-up steps: every operator
    // of the forward, the backward and the optimizer, with its time.
    Probe step = TrainProbe(model.get(), &opt, o);
    for (int i = 0; i < 3; ++i) RETURN_IF_ERROR(step().status());
    std::ofstream out(o.profile);
    if (!out) return absl::InvalidArgumentError("cannot write --profile " + o.profile);
    try {
      torch::autograd::profiler::RecordProfile trace(out);
      RETURN_IF_ERROR(step().status());
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat("profiling one training step into ", o.profile, ": ", e.what()));
    }
    out.close();
    if (!out) return absl::DataLossError("writing --profile " + o.profile + " failed");
    std::cerr << "profile of one training step: " << o.profile
              << " (Chrome trace: chrome://tracing or ui.perfetto.dev)\n";
  }
  s.name = absl::StrCat("model_", o.preset, "_train_step_b", o.train_batch, "x",
                        o.train_seq);
  ASSIGN_OR_RETURN(
      SideBySideResult train,
      RunSideBySide(s, TrainProbe(model.get(), &opt, o),
                    CommandProbe(absl::StrCat(peer, "train ", dir, " ", o.train_batch,
                                              " ", o.train_seq))));
  RETURN_IF_ERROR(Report(train, o));

  // Training FLOP/s against the GEMM peak, alternating rounds so that load on the
  // machine hits both sides alike.
  const double flops_per_token =
      TrainingFlops(config, o.train_batch, o.train_seq) / (o.train_batch * o.train_seq);
  Probe train_probe = TrainProbe(model.get(), &opt, o);
  SideBySideOptions f = s;
  f.name = absl::StrCat("model_", o.preset, "_train_flops_vs_gemm");
  f.unit = "GFLOP/s";
  f.measured_label = "train step";
  f.baseline_label = "plain GEMMs";
  ASSIGN_OR_RETURN(SideBySideResult flops,
                   RunSideBySide(
                       f,
                       [&]() -> absl::StatusOr<double> {
                         ASSIGN_OR_RETURN(double tokens_per_s, train_probe());
                         return tokens_per_s * flops_per_token / 1e9;
                       },
                       GemmProbe(config, o.train_batch * o.train_seq)));
  RETURN_IF_ERROR(Report(flops, o));
  std::cout << "training FLOP/s as a fraction of the GEMM peak: " << flops.ratio
            << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace nbrl::bench

constexpr char kUsage[] =
    "usage: nbrl-model-bench [--preset small|512|quickstart] [--rounds N]\n"
    "         [--json-dir DIR] [--only generate|train] [--train-batch N]\n"
    "         [--train-seq N] [--profile TRACE.json]\n"
    "Generation and training-step throughput side by side with the same model in\n"
    "python3-torch (bench/model_peer.py), and the step's FLOP/s against plain GEMMs.\n"
    "--profile writes libtorch's profile of one training step as a Chrome trace.\n";

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  nbrl::common::KeepFreedMemoryForReuse();
  nbrl::bench::BenchOptions o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--preset" &&
        (value == "small" || value == "512" || value == "quickstart")) {
      o.preset = value;
    } else if (flag == "--rounds" && absl::SimpleAtoi(value, &o.rounds)) {
    } else if (flag == "--json-dir") {
      o.json_dir = value;
    } else if (flag == "--only" && (value == "generate" || value == "train")) {
      o.only = value;
    } else if (flag == "--train-batch" && absl::SimpleAtoi(value, &o.train_batch) &&
               o.train_batch > 0) {
    } else if (flag == "--train-seq" && absl::SimpleAtoi(value, &o.train_seq) &&
               o.train_seq > 1) {
    } else if (flag == "--profile") {
      o.profile = value;
    } else {
      std::cerr << kUsage;
      return 2;
    }
  }
  if (argc % 2 == 0) {
    std::cerr << "nbrl-model-bench: every flag needs a value\n";
    return 2;
  }
  if (absl::Status s = nbrl::bench::Run(o); !s.ok()) {
    std::cerr << "nbrl-model-bench: " << s << "\n";
    return 1;
  }
  return 0;
}
