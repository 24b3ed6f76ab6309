// Loading and saving a Transformer as a Hugging Face checkpoint directory:
// `config.json` plus `model.safetensors` (or shards and
// `model.safetensors.index.json`). A directory we save loads in transformers'
// AutoModelForCausalLM, and a Qwen2.5 / Llama directory from the Hub loads here.
// Tokenizer files in the directory are left alone.
#ifndef NBRL_MODEL_CHECKPOINT_H_
#define NBRL_MODEL_CHECKPOINT_H_

#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace nbrl::model {

// Reads `dir`/config.json and the weights, converting them to options.dtype on
// options.device. Errors from LoadModelConfig, ReadSafetensorsDir and
// Transformer::LoadStateDict, each naming the file and the field or tensor.
absl::StatusOr<std::unique_ptr<Transformer>> LoadTransformer(
    const std::string& dir, const TransformerOptions& options = {});

struct SaveOptions {
  // dtype on disk: kFloat32, kBFloat16 or kFloat16; config.json's torch_dtype says it.
  torch::Dtype dtype = torch::kFloat32;
  // See SafetensorsWriteOptions: 0 writes one file.
  int64_t max_shard_bytes = 0;
};

// Writes config.json and the weights into `dir` (created when missing).
absl::Status SaveTransformer(const Transformer& model, const std::string& dir,
                             const SaveOptions& options = {});

}  // namespace nbrl::model

#endif  // NBRL_MODEL_CHECKPOINT_H_
