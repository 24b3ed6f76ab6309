#include "model/checkpoint.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_test_util.h"
#include "model/safetensors.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;
using testing::MaxAbsDiff;

torch::Tensor SomeTokens() { return torch::tensor({{3, 14, 15, 92, 65, 35}}); }

torch::Tensor LogitsOf(Transformer& model) {
  torch::NoGradGuard no_grad;
  torch::Tensor tokens = SomeTokens();
  return model.Logits(model.Forward(tokens, torch::ones_like(tokens, torch::kBool)));
}

TEST(CheckpointTest, HuggingFaceNames) {
  auto model = testing::RandomModel(testing::SmallQwen2Config());
  TensorMap state = model->StateDict();
  for (const char* name :
       {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.bias",
        "model.layers.1.self_attn.v_proj.weight",
        "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
        "model.layers.1.post_attention_layernorm.weight", "model.norm.weight",
        "lm_head.weight"}) {
    EXPECT_TRUE(state.count(name)) << name;
  }
  EXPECT_EQ(state.count("model.layers.0.self_attn.o_proj.bias"), 0u);
  EXPECT_EQ(state.size(), 3u + 2 * 12);
  int64_t total = 0;
  for (const auto& [name, t] : state) total += t.numel();
  EXPECT_EQ(total, ParameterCount(model->config()));
  EXPECT_EQ(state.at("model.layers.0.self_attn.k_proj.weight").sizes(),
            torch::IntArrayRef({16, 32}));

  auto tied = testing::RandomModel(testing::SmallLlamaConfig());
  TensorMap tied_state = tied->StateDict();
  EXPECT_EQ(tied_state.count("lm_head.weight"), 0u);
  EXPECT_EQ(tied_state.count("model.layers.0.self_attn.q_proj.bias"), 0u);
}

TEST(CheckpointTest, SaveAndLoadGiveTheSameLogits) {
  for (const ModelConfig& config :
       {testing::SmallQwen2Config(), testing::SmallLlamaConfig()}) {
    const std::string dir = testing::TempDir("ckpt_roundtrip_" + config.model_type);
    auto model = testing::RandomModel(config);
    ASSERT_TRUE(SaveTransformer(*model, dir).ok());
    EXPECT_TRUE(std::filesystem::exists(dir + "/config.json"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors"));
    auto loaded = LoadTransformer(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(MaxAbsDiff(LogitsOf(*model), LogitsOf(**loaded)), 0.0)
        << config.model_type;
  }
}

TEST(CheckpointTest, ShardedBf16CheckpointLoads) {
  const std::string dir = testing::TempDir("ckpt_sharded_bf16");
  auto model = testing::RandomModel(testing::SmallQwen2Config());
  ASSERT_TRUE(
      SaveTransformer(*model, dir, {torch::kBFloat16, /*max_shard_bytes=*/8192}).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  auto config = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->torch_dtype, "bfloat16");
  auto tensors = ReadSafetensorsDir(dir);
  ASSERT_TRUE(tensors.ok());
  EXPECT_EQ(tensors->at("model.norm.weight").scalar_type(), torch::kBFloat16);
  auto loaded = LoadTransformer(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->dtype(), torch::kFloat32);
  // Each loaded weight is the bf16 rounding of the original.
  for (const auto& [name, t] : (*loaded)->StateDict()) {
    EXPECT_TRUE(
        t.equal(model->StateDict().at(name).to(torch::kBFloat16).to(torch::kFloat32)))
        << name;
  }
}

class CheckpointErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("ckpt_errors");
    model_ = testing::RandomModel(testing::SmallQwen2Config());
    ASSERT_TRUE(SaveTransformer(*model_, dir_).ok());
    auto t = ReadSafetensorsDir(dir_);
    ASSERT_TRUE(t.ok());
    tensors_ = *t;
  }
  absl::Status LoadWith(const TensorMap& tensors) {
    EXPECT_TRUE(WriteSafetensorsDir(dir_, tensors).ok());
    return LoadTransformer(dir_).status();
  }
  std::string dir_;
  std::unique_ptr<Transformer> model_;
  TensorMap tensors_;
};

TEST_F(CheckpointErrorTest, MissingTensorIsNotFound) {
  tensors_.erase("model.layers.1.mlp.up_proj.weight");
  absl::Status s = LoadWith(tensors_);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(dir_));
  EXPECT_THAT(s.message(), HasSubstr("'model.layers.1.mlp.up_proj.weight' is missing"));
}

TEST_F(CheckpointErrorTest, ShapeMismatchNamesTensorAndShapes) {
  tensors_["model.norm.weight"] = torch::ones({31});
  absl::Status s = LoadWith(tensors_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'model.norm.weight' has shape [31]"));
  EXPECT_THAT(s.message(), HasSubstr("[32]"));
}

TEST_F(CheckpointErrorTest, UnknownTensorIsInvalidArgument) {
  tensors_["model.layers.2.mlp.up_proj.weight"] = torch::ones({64, 32});
  absl::Status s = LoadWith(tensors_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.layers.2.mlp.up_proj.weight"));
}

TEST_F(CheckpointErrorTest, MissingConfigIsNotFound) {
  std::filesystem::remove(dir_ + "/config.json");
  auto loaded = LoadTransformer(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CheckpointErrorTest, CorruptWeightsAreDataLoss) {
  std::filesystem::resize_file(dir_ + "/model.safetensors", 100);
  auto loaded = LoadTransformer(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
}

TEST(TransformerCreateTest, Bf16OnCpuIsRefused) {
  TransformerOptions options;
  options.dtype = torch::kBFloat16;
  auto model = Transformer::Create(testing::SmallQwen2Config(), options);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("CUDA only"));
}

TEST(TransformerCreateTest, InitialisationIsSeeded) {
  TransformerOptions options;
  options.seed = 7;
  auto a = Transformer::Create(testing::SmallQwen2Config(), options);
  auto b = Transformer::Create(testing::SmallQwen2Config(), options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(MaxAbsDiff(LogitsOf(**a), LogitsOf(**b)), 0.0);
  EXPECT_TRUE((*a)->StateDict().at("model.norm.weight").equal(torch::ones({32})));
}

}  // namespace
}  // namespace nbrl::model
