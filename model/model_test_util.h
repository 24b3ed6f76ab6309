// Helpers shared by the model tests: small configs, random models, temp dirs.
#ifndef NBRL_MODEL_MODEL_TEST_UTIL_H_
#define NBRL_MODEL_MODEL_TEST_UTIL_H_

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "glog/logging.h"
#include "gtest/gtest.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::model::testing {

// A small Qwen2-shaped config: GQA (4 query heads over 2 KV heads), q/k/v bias,
// untied head.
inline ModelConfig SmallQwen2Config() {
  ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 256;
  c.tie_word_embeddings = false;
  c.attention_bias = true;
  return c;
}

// A Llama-shaped variant: tied embeddings, no bias, MHA, another rope_theta.
inline ModelConfig SmallLlamaConfig() {
  ModelConfig c = SmallQwen2Config();
  c.model_type = "llama";
  c.num_key_value_heads = 4;
  c.attention_bias = false;
  c.tie_word_embeddings = true;
  c.rope_theta = 500000.0;
  c.rms_norm_eps = 1e-5;
  return c;
}

// A model whose every parameter (norm weights and biases included) is random, so
// that tests exercise all of them. Logits come out with a spread of a few units.
inline std::unique_ptr<Transformer> RandomModel(const ModelConfig& config,
                                                uint64_t seed = 1) {
  auto model = Transformer::Create(config, {});
  CHECK(model.ok()) << model.status();
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : (*model)->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) {
      p.value().uniform_(0.5, 1.5, gen);
    } else {
      p.value().normal_(0.0, 0.25, gen);
    }
  }
  return std::move(*model);
}

// This test process's scratch directory, removed when the process exits.
inline std::filesystem::path ScratchRoot() {
  static const testutil::TempDir root("nbrl_model_test_");
  return root.path();
}

// A fresh empty directory under the test's temporary directory.
inline std::string TempDir(const std::string& name) {
  std::filesystem::path dir = ScratchRoot() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace nbrl::model::testing

#endif  // NBRL_MODEL_MODEL_TEST_UTIL_H_
