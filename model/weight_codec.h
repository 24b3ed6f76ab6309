// Converts a model's state dict to and from a weight version on the wire
// (common/weight_stream.h): tensors by name, back to back in name order, each in its
// own dtype (f32, f16, bf16), with the manifest's offsets, shapes and CRC-32C.
//
// The learner encodes after each optimizer step; actors decode and load the result
// with Transformer::LoadStateDict.
#ifndef NBRL_MODEL_WEIGHT_CODEC_H_
#define NBRL_MODEL_WEIGHT_CODEC_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/weight_stream.h"
#include "model/safetensors.h"

namespace nbrl::model {

// InvalidArgument for a dtype the wire does not carry. Tensors may live on any
// device; they are copied to the CPU. The bytes are copied and checksummed in one
// pass, which also gives the CRC-32C of each chunk of `chunk_bytes` (> 0; the
// publisher's chunk size) in the version's chunk_crcs.
absl::StatusOr<common::WeightVersion> EncodeWeights(const TensorMap& tensors,
                                                    uint64_t version, uint64_t step,
                                                    size_t chunk_bytes = size_t{1}
                                                                         << 20);

// CPU tensors, one per manifest entry. DataLoss for a manifest that does not match
// its bytes (ValidateWeightVersion) or a tensor whose size disagrees with its shape
// and dtype.
absl::StatusOr<TensorMap> DecodeWeights(const common::WeightVersion& version);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_WEIGHT_CODEC_H_
