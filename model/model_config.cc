#include "model/model_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json_util.h"
#include "common/status_macros.h"

namespace nbrl::model {
namespace {

using nlohmann::json;

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": field '", field, "' ", problem));
}

absl::StatusOr<int64_t> RequiredInt(const json& j, const std::string& source,
                                    const std::string& field) {
  auto it = j.find(field);
  if (it == j.end()) return FieldError(source, field, "is missing");
  if (!it->is_number_integer()) {
    return FieldError(source, field,
                      absl::StrCat("must be an integer, got ", it->dump()));
  }
  return it->get<int64_t>();
}

absl::StatusOr<double> OptionalNumber(const json& j, const std::string& source,
                                      const std::string& field, double fallback) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) {
    return FieldError(source, field,
                      absl::StrCat("must be a number, got ", it->dump()));
  }
  return it->get<double>();
}

absl::StatusOr<bool> OptionalBool(const json& j, const std::string& source,
                                  const std::string& field, bool fallback) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return FieldError(source, field,
                      absl::StrCat("must be true or false, got ", it->dump()));
  }
  return it->get<bool>();
}

// eos_token_id may be an int or a list of ints (Llama 3); we keep the first.
absl::StatusOr<int64_t> OptionalTokenId(const json& j, const std::string& source,
                                        const std::string& field) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return -1;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
    return (*it)[0].get<int64_t>();
  }
  return FieldError(source, field,
                    absl::StrCat("must be a token id, got ", it->dump()));
}

absl::StatusOr<ModelConfig> FromJson(const json& j, const std::string& source) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a JSON object"));
  }
  ModelConfig c;
  auto type = j.find("model_type");
  if (type == j.end() || !type->is_string()) {
    return FieldError(source, "model_type", "is missing or not a string");
  }
  c.model_type = type->get<std::string>();
  if (c.model_type != "qwen2" && c.model_type != "llama") {
    return FieldError(source, "model_type",
                      absl::StrCat("is '", c.model_type, "'; supported: qwen2, llama"));
  }
  ASSIGN_OR_RETURN(c.vocab_size, RequiredInt(j, source, "vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, RequiredInt(j, source, "hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, RequiredInt(j, source, "intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, RequiredInt(j, source, "num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads,
                   RequiredInt(j, source, "num_attention_heads"));
  c.num_key_value_heads = c.num_attention_heads;
  if (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()) {
    ASSIGN_OR_RETURN(c.num_key_value_heads,
                     RequiredInt(j, source, "num_key_value_heads"));
  }
  c.head_dim = c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    ASSIGN_OR_RETURN(c.head_dim, RequiredInt(j, source, "head_dim"));
  }
  ASSIGN_OR_RETURN(c.rms_norm_eps, OptionalNumber(j, source, "rms_norm_eps", 1e-6));
  ASSIGN_OR_RETURN(c.rope_theta, OptionalNumber(j, source, "rope_theta", 10000.0));
  double max_pos = 0;
  ASSIGN_OR_RETURN(max_pos,
                   OptionalNumber(j, source, "max_position_embeddings", 32768));
  c.max_position_embeddings = static_cast<int64_t>(max_pos);
  ASSIGN_OR_RETURN(c.tie_word_embeddings,
                   OptionalBool(j, source, "tie_word_embeddings", false));
  // Qwen2 always has q/k/v biases; Llama has them when attention_bias is set.
  ASSIGN_OR_RETURN(c.attention_bias,
                   OptionalBool(j, source, "attention_bias", c.model_type == "qwen2"));
  if (c.model_type == "qwen2") c.attention_bias = true;
  bool mlp_bias = false;
  ASSIGN_OR_RETURN(mlp_bias, OptionalBool(j, source, "mlp_bias", false));
  if (mlp_bias) return FieldError(source, "mlp_bias", "is true; not supported");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    return FieldError(source, "rope_scaling",
                      "is set; only plain rotary embeddings (null) are supported");
  }
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
    return FieldError(source, "hidden_act",
                      absl::StrCat("is ", common::JsonForMessage(j["hidden_act"]),
                                   "; only silu is supported"));
  }
  if (j.contains("torch_dtype") && !j["torch_dtype"].is_null()) {
    if (!j["torch_dtype"].is_string()) {
      return FieldError(source, "torch_dtype", "must be a string");
    }
    c.torch_dtype = j["torch_dtype"].get<std::string>();
    if (c.torch_dtype != "float32" && c.torch_dtype != "float16" &&
        c.torch_dtype != "bfloat16") {
      return FieldError(source, "torch_dtype",
                        absl::StrCat("is '", c.torch_dtype,
                                     "'; expected float32, float16 or bfloat16"));
    }
  }
  ASSIGN_OR_RETURN(c.bos_token_id, OptionalTokenId(j, source, "bos_token_id"));
  ASSIGN_OR_RETURN(c.eos_token_id, OptionalTokenId(j, source, "eos_token_id"));
  RETURN_IF_ERROR(ValidateModelConfig(c, source));
  return c;
}

}  // namespace

absl::Status ValidateModelConfig(const ModelConfig& c, const std::string& source) {
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position_embeddings},
  };
  for (const auto& [field, value] : positive) {
    if (value <= 0) {
      return FieldError(source, field, absl::StrCat("must be positive, got ", value));
    }
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return FieldError(
        source, "num_key_value_heads",
        absl::StrCat("(", c.num_key_value_heads, ") must divide num_attention_heads (",
                     c.num_attention_heads, ")"));
  }
  if (c.head_dim % 2 != 0) {
    return FieldError(
        source, "head_dim",
        absl::StrCat("must be even for rotary embeddings, got ", c.head_dim));
  }
  if (!(c.rms_norm_eps > 0)) return FieldError(source, "rms_norm_eps", "must be > 0");
  if (!(c.rope_theta > 0)) return FieldError(source, "rope_theta", "must be > 0");
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  json j = json::parse(json_text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  }
  return FromJson(j, source);
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  return ParseModelConfig(text, path);
}

std::string ModelConfigToJson(const ModelConfig& c) {
  const bool qwen = c.model_type == "qwen2";
  json j = {
      {"architectures", {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", c.model_type},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"hidden_act", "silu"},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", nullptr},
      {"max_position_embeddings", c.max_position_embeddings},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"torch_dtype", c.torch_dtype},
      {"attention_dropout", 0.0},
      {"use_cache", true},
  };
  if (!qwen) j["attention_bias"] = c.attention_bias;
  if (qwen) j["use_sliding_window"] = false;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) j["eos_token_id"] = c.eos_token_id;
  return j.dump(2) + "\n";
}

int64_t ParameterCount(const ModelConfig& c) {
  const int64_t d = c.hidden_size, hd = c.head_dim;
  const int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  int64_t attn = d * q + 2 * d * kv + q * d + (c.attention_bias ? q + 2 * kv : 0);
  int64_t mlp = 3 * d * c.intermediate_size;
  int64_t layer = attn + mlp + 2 * d;
  int64_t embed = c.vocab_size * d;
  return embed + c.num_hidden_layers * layer + d + (c.tie_word_embeddings ? 0 : embed);
}

}  // namespace nbrl::model
