// Transformer: a decoder-only Qwen2 / Llama-family language model (nanoGPT's GPT,
// with RMSNorm, rotary embeddings, grouped-query attention and SwiGLU).
//
// Parameter names are Hugging Face's (`model.embed_tokens.weight`,
// `model.layers.N.self_attn.q_proj.weight`, `model.norm.weight`, `lm_head.weight`),
// so named_parameters() is a Hugging Face state dict. With tied embeddings there is
// no `lm_head.weight`; the head reuses the embedding matrix.
//
// Shape legend: B batch rows, L tokens per row, D hidden size, V vocabulary.
//
//   ASSIGN_OR_RETURN(auto model, Transformer::Create(config, {}));
//   torch::Tensor logits = model->Logits(model->Forward(tokens, valid));
//
// Thread safety: a forward reads the parameters only, so concurrent forwards with
// separate caches are safe; changing parameters is not.
#ifndef NBRL_MODEL_TRANSFORMER_H_
#define NBRL_MODEL_TRANSFORMER_H_

#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "model/layers.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace nbrl::model {

struct TransformerOptions {
  // Where the parameters live: "cpu", "cuda", "cuda:N" or "auto" (see runtime.h).
  std::string device = "cpu";
  // Parameter and activation dtype: kFloat32, or kBFloat16 (CUDA only; on CPU
  // libtorch has no fast bf16 matmul, and Create refuses it).
  torch::Dtype dtype = torch::kFloat32;
  // Standard deviation of the normal initialisation of linear and embedding
  // weights (norm weights start at 1, biases at 0), with this seed.
  double init_std = 0.02;
  uint64_t seed = 0;
};

// The `model.` part of the state dict: embeddings, the layers and the final norm.
class DecoderStackImpl : public torch::nn::Module {
 public:
  explicit DecoderStackImpl(const ModelConfig& config);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(DecoderStack);

class Transformer : public torch::nn::Module {
 public:
  // InvalidArgument for an invalid config, a bad device name or bf16 on CPU;
  // FailedPrecondition for a CUDA device this process cannot use.
  static absl::StatusOr<std::unique_ptr<Transformer>> Create(
      const ModelConfig& config, const TransformerOptions& options);

  // tokens [B, L] int64, valid [B, L] bool (false: padding, anywhere in a row) ->
  // hidden states after the final norm [B, L, D]. Token i of row b sits at rotary
  // position (cached tokens of row b) + (valid tokens before it in this chunk) and
  // attends to the earlier valid tokens of its row, cached ones included. With a
  // cache, the chunk's keys and values are appended to it. Hidden states at padding
  // positions are meaningless. Throws c10::Error on bad input (token out of range).
  torch::Tensor Forward(const torch::Tensor& tokens, const torch::Tensor& valid,
                        KvCache* cache = nullptr);

  // Several sequences that share prefixes, packed into one row each (a prefix tree
  // laid out node by node): tokens [B, L] int64, positions [B, L] int64 (each
  // token's rotary position within its own sequence), attend [B, L, L] bool (query
  // i may attend to key j; every query must attend to itself). No cache; for
  // teacher-forced training. -> hidden states after the final norm [B, L, D].
  torch::Tensor ForwardPacked(const torch::Tensor& tokens,
                              const torch::Tensor& positions,
                              const torch::Tensor& attend);

  // hidden [..., D] -> logits [..., V] in the model's dtype.
  torch::Tensor Logits(const torch::Tensor& hidden);
  // The output head's weight [V, D]: the embedding matrix when tied.
  torch::Tensor head_weight() const;

  // An empty cache for `batch_size` rows on this model's device and dtype.
  KvCache NewCache(int64_t batch_size) const;

  const ModelConfig& config() const { return config_; }
  torch::Device device() const { return device_; }
  torch::Dtype dtype() const { return dtype_; }

  // Parameters by Hugging Face name (shared with the model, not copies).
  TensorMap StateDict() const;
  // Copies `tensors` into the parameters, converting dtype and device. Every
  // parameter must be present with its shape: NotFound naming the first missing
  // tensor, InvalidArgument for a shape mismatch; tensors the model does not have are
  // an InvalidArgument too (a sign of the wrong config). `source` names the
  // checkpoint in errors.
  absl::Status LoadStateDict(const TensorMap& tensors, const std::string& source);

 private:
  Transformer(const ModelConfig& config, torch::Device device, torch::Dtype dtype);

  // Constant after construction.
  ModelConfig config_;
  torch::Device device_;
  torch::Dtype dtype_;
  RotaryEmbedding rotary_;
  DecoderStack model_{nullptr};
  torch::nn::Linear lm_head_{nullptr};  // null when tied
};

}  // namespace nbrl::model

#endif  // NBRL_MODEL_TRANSFORMER_H_
