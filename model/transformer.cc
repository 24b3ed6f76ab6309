#include "model/transformer.h"

#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/runtime.h"

namespace nbrl::model {

DecoderStackImpl::DecoderStackImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens",
                                 torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers->push_back(DecoderLayer(c, i));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

Transformer::Transformer(const ModelConfig& config, torch::Device device,
                         torch::Dtype dtype)
    : config_(config),
      device_(device),
      dtype_(dtype),
      rotary_(config.head_dim, config.rope_theta, device) {
  model_ = register_module("model", DecoderStack(config));
  if (!config.tie_word_embeddings) {
    lm_head_ = register_module(
        "lm_head", torch::nn::Linear(
                       torch::nn::LinearOptions(config.hidden_size, config.vocab_size)
                           .bias(false)));
  }
}

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Create(
    const ModelConfig& config, const TransformerOptions& options) {
  RETURN_IF_ERROR(ValidateModelConfig(config, "model config"));
  ASSIGN_OR_RETURN(c10::Device device, SelectDevice(options.device));
  if (options.dtype != torch::kFloat32 && options.dtype != torch::kBFloat16) {
    return absl::InvalidArgumentError("model dtype must be float32 or bfloat16");
  }
  if (options.dtype == torch::kBFloat16 && device.is_cpu()) {
    return absl::InvalidArgumentError(
        "bfloat16 runs on CUDA only: libtorch has no fast bf16 matmul on CPU; use "
        "float32");
  }
  try {
    std::unique_ptr<Transformer> model(new Transformer(config, device, options.dtype));
    torch::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    for (auto& p : model->named_parameters()) {
      const std::string& name = p.key();
      if (absl::EndsWith(name, "norm.weight")) {
        p.value().fill_(1.0);
      } else if (absl::EndsWith(name, ".bias")) {
        p.value().zero_();
      } else {
        p.value().normal_(0.0, options.init_std, gen);
      }
    }
    model->to(device, options.dtype);
    return model;
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("creating the transformer failed: ", e.what_without_backtrace()));
  }
}

torch::Tensor Transformer::Forward(const torch::Tensor& tokens,
                                   const torch::Tensor& valid, KvCache* cache) {
  const int64_t B = tokens.size(0), L = tokens.size(1);
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(device_);
  torch::Tensor chunk_valid = valid.to(device_, torch::kBool);  // [B, L]
  // Make room in the cache first: Begin may compact it, which changes its slots.
  if (cache != nullptr) cache->Begin(L);
  try {
    // Rotary position: valid tokens before this one in the row (cached ones included).
    torch::Tensor positions =
        (chunk_valid.to(torch::kInt64).cumsum(1) - 1).clamp_min(0);
    torch::Tensor key_valid = chunk_valid;  // [B, S]
    int64_t past = 0;
    if (cache != nullptr) {
      positions = positions + torch::tensor(cache->lengths(), long_opts).unsqueeze(1);
      past = cache->num_slots();
      key_valid = torch::cat({cache->valid(), chunk_valid}, 1);
    }
    const int64_t S = past + L;
    // Query i sits in slot past + i and sees valid slots up to its own (and always
    // itself, so a padding query has something to attend to).
    torch::Tensor q_slot = torch::arange(past, S, long_opts).view({L, 1});
    torch::Tensor k_slot = torch::arange(0, S, long_opts).view({1, S});
    torch::Tensor mask =
        (key_valid.unsqueeze(1) & (k_slot <= q_slot)) | (k_slot == q_slot);
    AttentionContext ctx;
    ctx.hidden = HiddenSlots(mask.view({B, 1, 1, L, S}));
    std::tie(ctx.cos, ctx.sin) = rotary_.Tables(positions, dtype_);
    ctx.cache = cache;

    torch::Tensor x = model_->embed_tokens(tokens.to(device_));  // [B, L, D]
    for (const auto& layer : *model_->layers)
      x = layer->as<DecoderLayerImpl>()->forward(x, ctx);
    if (cache != nullptr) cache->Commit(chunk_valid);
    return model_->norm(x);  // [B, L, D]
  } catch (...) {
    if (cache != nullptr) cache->Rollback();
    throw;
  }
}

torch::Tensor Transformer::ForwardPacked(const torch::Tensor& tokens,
                                         const torch::Tensor& positions,
                                         const torch::Tensor& attend) {
  const int64_t B = tokens.size(0), L = tokens.size(1);
  AttentionContext ctx;
  ctx.hidden = HiddenSlots(attend.to(device_, torch::kBool).view({B, 1, 1, L, L}));
  std::tie(ctx.cos, ctx.sin) =
      rotary_.Tables(positions.to(device_, torch::kInt64), dtype_);
  torch::Tensor x = model_->embed_tokens(tokens.to(device_));  // [B, L, D]
  for (const auto& layer : *model_->layers)
    x = layer->as<DecoderLayerImpl>()->forward(x, ctx);
  return model_->norm(x);
}

torch::Tensor Transformer::Logits(const torch::Tensor& hidden) {
  return Project(hidden, head_weight());
}

torch::Tensor Transformer::head_weight() const {
  return lm_head_ ? lm_head_->weight : model_->embed_tokens->weight;
}

KvCache Transformer::NewCache(int64_t batch_size) const {
  return KvCache(config_, batch_size,
                 torch::TensorOptions().dtype(dtype_).device(device_));
}

TensorMap Transformer::StateDict() const {
  TensorMap out;
  for (const auto& p : named_parameters()) out.emplace(p.key(), p.value());
  return out;
}

absl::Status Transformer::LoadStateDict(const TensorMap& tensors,
                                        const std::string& source) {
  auto params = named_parameters();
  for (const auto& [name, tensor] : tensors) {
    if (params.contains(name)) continue;
    // Tied checkpoints sometimes carry the head anyway; old ones carry rotary tables.
    if ((name == "lm_head.weight" && config_.tie_word_embeddings) ||
        absl::EndsWith(name, "rotary_emb.inv_freq")) {
      continue;
    }
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": tensor '", name,
                     "' is not a parameter of this model (wrong config.json?)"));
  }
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    auto it = tensors.find(p.key());
    if (it == tensors.end()) {
      return absl::NotFoundError(
          absl::StrCat(source, ": tensor '", p.key(), "' is missing"));
    }
    if (it->second.sizes() != p.value().sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensor '", p.key(), "' has shape ", c10::str(it->second.sizes()),
          ", the config needs ", c10::str(p.value().sizes())));
    }
    try {
      p.value().copy_(it->second);
    } catch (const c10::Error& e) {
      return absl::InternalError(
          absl::StrCat(source, ": copying tensor '", p.key(),
                       "' failed: ", e.what_without_backtrace()));
    }
  }
  return absl::OkStatus();
}

}  // namespace nbrl::model
