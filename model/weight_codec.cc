#include "model/weight_codec.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"

namespace nbrl::model {
namespace {

absl::StatusOr<v1::DType> ToWire(torch::Dtype d) {
  switch (d) {
    case torch::kFloat32:
      return v1::DTYPE_F32;
    case torch::kFloat16:
      return v1::DTYPE_F16;
    case torch::kBFloat16:
      return v1::DTYPE_BF16;
    case torch::kInt64:
      return v1::DTYPE_I64;
    case torch::kInt32:
      return v1::DTYPE_I32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", c10::toString(d), " cannot be sent as weights"));
  }
}

absl::StatusOr<torch::Dtype> FromWire(v1::DType d) {
  switch (d) {
    case v1::DTYPE_F32:
      return torch::kFloat32;
    case v1::DTYPE_F16:
      return torch::kFloat16;
    case v1::DTYPE_BF16:
      return torch::kBFloat16;
    case v1::DTYPE_I64:
      return torch::kInt64;
    case v1::DTYPE_I32:
      return torch::kInt32;
    default:
      return absl::DataLossError(
          absl::StrCat("unknown weight dtype ", static_cast<int>(d)));
  }
}

}  // namespace

absl::StatusOr<common::WeightVersion> EncodeWeights(const TensorMap& tensors,
                                                    uint64_t version, uint64_t step,
                                                    size_t chunk_bytes) {
  if (chunk_bytes == 0) {
    return absl::InvalidArgumentError("weight chunks must hold at least one byte");
  }
  common::WeightVersion out;
  out.manifest.set_version(version);
  out.manifest.set_step(step);
  size_t total = 0;
  std::vector<torch::Tensor> cpu;
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    auto wire = ToWire(c.scalar_type());
    if (!wire.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, ": ", wire.status().message()));
    }
    v1::TensorInfo* info = out.manifest.add_tensors();
    info->set_name(name);
    info->set_dtype(*wire);
    for (int64_t s : c.sizes()) info->add_shape(s);
    info->set_offset(total);
    info->set_num_bytes(c.nbytes());
    total += c.nbytes();
    cpu.push_back(std::move(c));
  }
  out.bytes.resize(total);
  // Copied and checksummed in one pass, chunk by chunk (a chunk may span tensors);
  // the whole version's CRC is combined from the chunks'.
  out.chunk_crc_bytes = chunk_bytes;
  size_t offset = 0, in_chunk = 0;
  uint32_t chunk_crc = 0, crc = 0;
  for (const torch::Tensor& c : cpu) {
    const char* src = static_cast<const char*>(c.data_ptr());
    for (size_t left = c.nbytes(); left > 0;) {
      const size_t take = std::min(left, chunk_bytes - in_chunk);
      chunk_crc = common::Crc32cCopy(out.bytes.data() + offset, src, take, chunk_crc);
      src += take;
      offset += take;
      left -= take;
      in_chunk += take;
      if (in_chunk == chunk_bytes) {
        out.chunk_crcs.push_back(chunk_crc);
        crc = common::Crc32cCombine(crc, chunk_crc, in_chunk);
        chunk_crc = 0;
        in_chunk = 0;
      }
    }
  }
  if (in_chunk > 0 || out.chunk_crcs.empty()) {  // a version of 0 bytes is one chunk
    out.chunk_crcs.push_back(chunk_crc);
    crc = common::Crc32cCombine(crc, chunk_crc, in_chunk);
  }
  out.manifest.set_total_bytes(total);
  out.manifest.set_crc32c(crc);
  return out;
}

absl::StatusOr<TensorMap> DecodeWeights(const common::WeightVersion& version) {
  if (absl::Status st = common::ValidateWeightVersion(version); !st.ok()) return st;
  TensorMap out;
  for (const v1::TensorInfo& info : version.manifest.tensors()) {
    auto dtype = FromWire(info.dtype());
    if (!dtype.ok()) {
      return absl::DataLossError(
          absl::StrCat("tensor ", info.name(), ": ", dtype.status().message()));
    }
    std::vector<int64_t> shape(info.shape().begin(), info.shape().end());
    int64_t numel = 1;
    for (int64_t s : shape) {
      if (s < 0)
        return absl::DataLossError(
            absl::StrCat("tensor ", info.name(), ": negative shape"));
      numel *= s;
    }
    if (static_cast<uint64_t>(numel) * c10::elementSize(*dtype) != info.num_bytes()) {
      return absl::DataLossError(
          absl::StrCat("tensor ", info.name(), ": ", info.num_bytes(),
                       " bytes do not hold its shape and dtype"));
    }
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(*dtype));
    std::memcpy(t.data_ptr(), version.bytes.data() + info.offset(), info.num_bytes());
    out[info.name()] = std::move(t);
  }
  return out;
}

}  // namespace nbrl::model
