// The building blocks of a Qwen2 / Llama decoder layer, in forward order, with the
// Hugging Face parameter names (`input_layernorm.weight`, `self_attn.q_proj.weight`,
// `mlp.gate_proj.weight`, ...). Read with transformer.h, which stacks them.
//
// Shape legend:
//   B batch rows, L new tokens per row (this chunk), S key slots (cache + chunk),
//   D hidden size, H query heads, KV key/value heads, G = H / KV queries per KV head,
//   hd head width, F MLP width.
//
// forward() methods throw c10::Error like any torch module; the Status boundary is
// the Generator, the Scorer and the checkpoint functions.
#ifndef NBRL_MODEL_LAYERS_H_
#define NBRL_MODEL_LAYERS_H_

#include <torch/torch.h>

#include "model/kv_cache.h"
#include "model/model_config.h"

namespace nbrl::model {

// What every attention layer of one forward shares.
struct AttentionContext {
  torch::Tensor cos, sin;    // [B, 1, L, hd] rotary tables at each token's position
  torch::Tensor hidden;      // [B, 1, 1, L, S] bool: true where a query may not
                             // attend to a key slot (HiddenSlots), shared by every
                             // query head; true at every slot after the query's own
                             // (past + l): attention is causal, whatever else it
                             // masks. A bool mask, not an additive float bias: a
                             // quarter of the memory, and filled block by block
  KvCache* cache = nullptr;  // null: attend within the chunk only (S = L)
};

// mask [B, 1, 1, L, S] bool (true: may attend) -> AttentionContext::hidden.
torch::Tensor HiddenSlots(const torch::Tensor& mask);

// Queries per block of the attention of a chunk of at least twice this many tokens
// (a training row, a long prefill): each block is scored against the key slots up
// to its own last query only.
inline constexpr int64_t kAttentionBlock = 256;
// At most this many bytes of scores per block of queries: a batched prefill (8
// rows of 300 new tokens against 3,000 slots would be 112 MiB of scores per layer)
// goes in smaller blocks, whose buffers stay under glibc's largest mmap threshold
// (32 MiB, common/process.h) and are reused from the heap instead of being mapped
// and page-faulted in afresh for every layer.
inline constexpr int64_t kMaxScoreBlockBytes = 16 << 20;

// y = x / sqrt(mean(x^2) + eps) * weight, computed in fp32 as Hugging Face does.
// On CPU in fp32, one fused pass forward and one backward (layers.cc).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // [..., D] -> [..., D]

 private:
  double eps_;
  torch::Tensor weight_;
};
TORCH_MODULE(RMSNorm);

// Rotary tables: cos/sin of position * theta^(-2i/hd), the two halves repeated
// (Hugging Face's rotate_half layout, not interleaved pairs).
class RotaryEmbedding {
 public:
  // inv_freq lives on `device`.
  RotaryEmbedding(int64_t head_dim, double theta, torch::Device device);
  // positions [B, L] int64 -> cos, sin [B, 1, L, hd] in `dtype`.
  std::pair<torch::Tensor, torch::Tensor> Tables(const torch::Tensor& positions,
                                                 torch::Dtype dtype) const;

 private:
  torch::Tensor inv_freq_;  // [hd/2] float32: theta^(-2i/hd)
};

// Applies the rotation to x [B, heads, L, hd] and multiplies by `scale`. On CPU in
// fp32, one fused pass each way, and the result is contiguous.
torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin, double scale = 1.0);

// y = x W^T + b for x [..., in]. For a few rows (decoding one token for a small
// batch) this is one matrix-vector product per row: OpenBLAS's GEMM packs the whole
// weight matrix first, which makes it several times slower than GEMV there.
torch::Tensor Project(const torch::Tensor& x, const torch::Tensor& weight,
                      const torch::Tensor& bias = {});
torch::Tensor Project(const torch::nn::Linear& linear, const torch::Tensor& x);

// Grouped-query causal self-attention with an optional bias on q, k and v.
class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& config);
  // x [B, L, D] -> [B, L, D]; with a cache, stores this chunk's keys and values in
  // layer `layer` and attends to the cached slots too.
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx,
                        int64_t layer);

 private:
  int64_t n_head_, n_kv_head_, head_dim_;
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr},
      o_proj_{nullptr};
};
TORCH_MODULE(Attention);

// silu(gate) * up, for gate and up of the same shape; fused on CPU in fp32.
torch::Tensor Swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// SwiGLU: down(silu(gate(x)) * up(x)).
class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // [B, L, D] -> [B, L, D]

 private:
  torch::nn::Linear gate_proj_{nullptr}, up_proj_{nullptr}, down_proj_{nullptr};
};
TORCH_MODULE(Mlp);

// Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(.)).
class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& config, int64_t index);
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx);

 private:
  int64_t index_;
  RMSNorm input_layernorm_{nullptr}, post_attention_layernorm_{nullptr};
  Attention self_attn_{nullptr};
  Mlp mlp_{nullptr};
};
TORCH_MODULE(DecoderLayer);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_LAYERS_H_
