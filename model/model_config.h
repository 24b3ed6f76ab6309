// ModelConfig: the shape of a Qwen2 / Llama-family decoder, read from and written to
// a Hugging Face `config.json`.
//
//   ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir + "/config.json"));
#ifndef NBRL_MODEL_MODEL_CONFIG_H_
#define NBRL_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nbrl::model {

struct ModelConfig {
  // "qwen2" or "llama" (config.json `model_type`).
  std::string model_type = "qwen2";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // D
  int64_t intermediate_size = 0;  // F, the SwiGLU width
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;  // H
  int64_t num_key_value_heads = 0;  // KV heads (GQA); H % KV == 0
  // Per-head width; config.json `head_dim` when present, else D / H.
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 32768;
  // The output head shares the embedding matrix (no `lm_head.weight` on disk).
  bool tie_word_embeddings = false;
  // q/k/v projections carry a bias: always for Qwen2, `attention_bias` for Llama.
  bool attention_bias = true;
  // config.json `torch_dtype`: "float32", "float16" or "bfloat16". The dtype the
  // checkpoint was saved in; the runtime dtype is chosen separately.
  std::string torch_dtype = "float32";
  // Token ids from config.json, -1 when absent.
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
};

// InvalidArgument naming `source` and the field when a size is not positive or the
// heads do not divide.
absl::Status ValidateModelConfig(const ModelConfig& config, const std::string& source);

// Parses config.json text. `source` names it in errors. InvalidArgument for
// malformed JSON, a missing or mistyped required field, an unsupported model_type,
// rope_scaling or hidden_act.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source);

// Reads and parses a config.json file (NotFound when absent).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// config.json text that Hugging Face transformers loads as the same model.
std::string ModelConfigToJson(const ModelConfig& config);

// Parameters of the model (embeddings and head included, the head once if tied).
int64_t ParameterCount(const ModelConfig& config);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_MODEL_CONFIG_H_
