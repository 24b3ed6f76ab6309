#include "model/model_config.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_test_util.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;

// Qwen2.5-0.5B-Instruct's config.json, as published.
constexpr char kQwen25Config[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
  "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
  "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

TEST(ModelConfigTest, ParsesQwen25Config) {
  auto c = ParseModelConfig(kQwen25Config, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_EQ(c->hidden_size, 896);
  EXPECT_EQ(c->intermediate_size, 4864);
  EXPECT_EQ(c->num_hidden_layers, 24);
  EXPECT_EQ(c->num_attention_heads, 14);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->vocab_size, 151936);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->eos_token_id, 151645);
  // Qwen2.5-0.5B has 494M parameters (embeddings counted once, tied).
  EXPECT_EQ(ParameterCount(*c), 494032768);
}

TEST(ModelConfigTest, LlamaDefaultsToNoBiasAndMultiHead) {
  auto c = ParseModelConfig(
      R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
          "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "eos_token_id": [3, 4]})",
      "llama/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_EQ(c->eos_token_id, 3);
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(ModelConfigTest, MissingFieldNamesFileAndField) {
  auto c = ParseModelConfig(
      R"({"model_type": "qwen2", "vocab_size": 10, "intermediate_size": 16,
          "num_hidden_layers": 1, "num_attention_heads": 2})",
      "ckpt/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("ckpt/config.json"));
  EXPECT_THAT(c.status().message(), HasSubstr("'hidden_size' is missing"));
}

TEST(ModelConfigTest, MistypedFieldIsRejected) {
  auto c = ParseModelConfig(
      R"({"model_type": "qwen2", "vocab_size": "10", "hidden_size": 8,
          "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2})",
      "c.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("'vocab_size' must be an integer"));
}

TEST(ModelConfigTest, HeadsThatDoNotDivideAreRejected) {
  auto c = ParseModelConfig(
      R"({"model_type": "qwen2", "vocab_size": 10, "hidden_size": 12,
          "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 3,
          "num_key_value_heads": 2})",
      "c.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("num_key_value_heads"));
}

TEST(ModelConfigTest, NonPositiveSizeIsRejected) {
  auto c = ParseModelConfig(
      R"({"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
          "intermediate_size": 16, "num_hidden_layers": 0, "num_attention_heads": 2})",
      "c.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("'num_hidden_layers' must be positive"));
}

TEST(ModelConfigTest, UnsupportedFeaturesAreRejected) {
  const std::string base =
      R"("vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
         "num_hidden_layers": 1, "num_attention_heads": 2)";
  auto gpt2 = ParseModelConfig("{\"model_type\": \"gpt2\", " + base + "}", "c.json");
  EXPECT_THAT(gpt2.status().message(), HasSubstr("supported: qwen2, llama"));
  auto scaled = ParseModelConfig(
      "{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"yarn\"}, " + base +
          "}",
      "c.json");
  EXPECT_THAT(scaled.status().message(), HasSubstr("rope_scaling"));
  auto gelu = ParseModelConfig(
      "{\"model_type\": \"llama\", \"hidden_act\": \"gelu\", " + base + "}", "c.json");
  EXPECT_THAT(gelu.status().message(), HasSubstr("hidden_act"));
  // A deeply nested value is named by its size, never dumped (dump() recurses).
  auto deep = ParseModelConfig(
      "{\"model_type\": \"llama\", \"hidden_act\": " + std::string(100000, '[') +
          std::string(100000, ']') + ", " + base + "}",
      "c.json");
  EXPECT_THAT(deep.status().message(), HasSubstr("is an array of 1; only silu"));
  auto dtype = ParseModelConfig(
      "{\"model_type\": \"llama\", \"torch_dtype\": \"int8\", " + base + "}", "c.json");
  EXPECT_THAT(dtype.status().message(), HasSubstr("torch_dtype"));
}

TEST(ModelConfigTest, MalformedJsonIsRejected) {
  auto c = ParseModelConfig(R"({"model_type": "qwen2", )", "broken/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("broken/config.json: not valid JSON"));
}

TEST(ModelConfigTest, MissingFileIsNotFound) {
  auto c = LoadModelConfig(testing::TempDir("config_missing") + "/config.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelConfigTest, JsonRoundTrip) {
  for (const ModelConfig& c :
       {testing::SmallQwen2Config(), testing::SmallLlamaConfig()}) {
    auto back = ParseModelConfig(ModelConfigToJson(c), "round trip");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->model_type, c.model_type);
    EXPECT_EQ(back->num_key_value_heads, c.num_key_value_heads);
    EXPECT_EQ(back->head_dim, c.head_dim);
    EXPECT_EQ(back->attention_bias, c.attention_bias);
    EXPECT_EQ(back->tie_word_embeddings, c.tie_word_embeddings);
    EXPECT_DOUBLE_EQ(back->rope_theta, c.rope_theta);
    EXPECT_DOUBLE_EQ(back->rms_norm_eps, c.rms_norm_eps);
  }
}

}  // namespace
}  // namespace nbrl::model
