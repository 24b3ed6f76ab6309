// Reading and writing the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian header length
// N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {...}}, then the raw tensor bytes (offsets are relative to the
// end of the header). Hugging Face checkpoints hold either one `model.safetensors`
// or shards listed by `model.safetensors.index.json` ({"weight_map": {name: file}}).
//
// Supported dtypes: F32, F16, BF16. Tensors read are CPU tensors in the file's dtype.
//
// Errors: NotFound (no file, no checkpoint in a directory); DataLoss for a corrupt
// or truncated file (bad header length, malformed JSON, offsets out of bounds or not
// matching the shape); InvalidArgument for unsupported dtypes; Unavailable for I/O
// errors. Every message names the file and, where there is one, the tensor.
#ifndef NBRL_MODEL_SAFETENSORS_H_
#define NBRL_MODEL_SAFETENSORS_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nbrl::model {

// Tensors by name, in name order.
using TensorMap = std::map<std::string, torch::Tensor>;

inline constexpr char kSafetensorsFile[] = "model.safetensors";
inline constexpr char kSafetensorsIndexFile[] = "model.safetensors.index.json";

// Reads one .safetensors file.
absl::StatusOr<TensorMap> ReadSafetensorsFile(const std::string& path);

// Reads a checkpoint directory: `model.safetensors`, or when
// `model.safetensors.index.json` exists, every shard it names (each tensor must be
// in the shard the index says).
absl::StatusOr<TensorMap> ReadSafetensorsDir(const std::string& dir);

// Writes one .safetensors file (atomically: a temporary file renamed into place).
// Tensors may live on any device and must be F32, F16 or BF16.
absl::Status WriteSafetensorsFile(const std::string& path, const TensorMap& tensors);

struct SafetensorsWriteOptions {
  // Largest shard in bytes of tensor data; 0 writes one `model.safetensors`. When the
  // tensors exceed it, shards `model-0000i-of-0000n.safetensors` and the index are
  // written, as Hugging Face's save_pretrained does.
  int64_t max_shard_bytes = 0;
};

// Writes a checkpoint directory (created when missing) in Hugging Face's layout.
absl::Status WriteSafetensorsDir(const std::string& dir, const TensorMap& tensors,
                                 const SafetensorsWriteOptions& options = {});

}  // namespace nbrl::model

#endif  // NBRL_MODEL_SAFETENSORS_H_
