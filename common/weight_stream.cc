#include "common/weight_stream.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crc32c.h"

namespace nbrl::common {

absl::Status ValidateWeightVersion(const WeightVersion& v) {
  const v1::WeightManifest& m = v.manifest;
  if (m.total_bytes() != v.bytes.size()) {
    return absl::DataLossError(
        absl::StrCat("weight version ", m.version(), " has ", v.bytes.size(),
                     " bytes, its manifest says ", m.total_bytes()));
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const v1::TensorInfo& t : m.tensors()) {
    if (t.name().empty()) {
      return absl::DataLossError(
          absl::StrCat("weight version ", m.version(), ": a tensor has no name"));
    }
    if (t.offset() > m.total_bytes() || t.num_bytes() > m.total_bytes() - t.offset()) {
      return absl::DataLossError(absl::StrCat("weight version ", m.version(),
                                              ": tensor ", t.name(),
                                              " lies outside the version's bytes"));
    }
    ranges.push_back({t.offset(), t.offset() + t.num_bytes()});
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      return absl::DataLossError(
          absl::StrCat("weight version ", m.version(), ": tensors overlap"));
    }
  }
  uint32_t crc = Crc32c(v.bytes.data(), v.bytes.size());
  if (crc != m.crc32c()) {
    return absl::DataLossError(absl::StrCat("weight version ", m.version(),
                                            ": checksum mismatch (corrupt bytes)"));
  }
  return absl::OkStatus();
}

std::vector<uint32_t> ChunkCrcs(const WeightVersion& v, size_t chunk_bytes) {
  if (chunk_bytes == 0) chunk_bytes = 1 << 20;
  std::vector<uint32_t> crcs;
  const uint64_t total = v.bytes.size();
  uint64_t offset = 0;
  do {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_bytes, total - offset));
    crcs.push_back(Crc32c(v.bytes.data() + offset, n));
    offset += n;
  } while (offset < total);
  return crcs;
}

bool ForEachChunk(const WeightVersion& v, size_t chunk_bytes,
                  const std::function<bool(const v1::WeightChunk&)>& write,
                  const std::vector<uint32_t>* crcs) {
  if (chunk_bytes == 0) chunk_bytes = 1 << 20;
  const uint64_t total = v.bytes.size();
  uint64_t offset = 0;
  size_t index = 0;
  // One message for every chunk: its data buffer is allocated once, not per chunk.
  v1::WeightChunk chunk;
  chunk.set_version(v.manifest.version());
  *chunk.mutable_manifest() = v.manifest;
  do {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_bytes, total - offset));
    chunk.set_offset(offset);
    chunk.set_data(v.bytes.data() + offset, n);
    chunk.set_crc32c(crcs != nullptr && index < crcs->size()
                         ? (*crcs)[index]
                         : Crc32c(v.bytes.data() + offset, n));
    offset += n;
    ++index;
    chunk.set_last(offset == total);
    if (!write(chunk)) return false;
    if (index == 1) chunk.clear_manifest();
  } while (offset < total);
  return true;
}

struct WeightAssembler::Spare {
  absl::Mutex mu;
  std::string bytes ABSL_GUARDED_BY(mu);
};

WeightAssembler::WeightAssembler(uint64_t max_spare_bytes)
    : max_spare_bytes_(max_spare_bytes), spare_(std::make_shared<Spare>()) {}

absl::StatusOr<std::shared_ptr<WeightVersion>> WeightAssembler::Add(
    const v1::WeightChunk& chunk) {
  auto fail = [&](const std::string& why) {
    partial_.reset();
    return absl::DataLossError(absl::StrCat("weight chunk of version ", chunk.version(),
                                            " at offset ", chunk.offset(), ": ", why));
  };
  if (chunk.has_manifest()) {
    if (chunk.offset() != 0) return fail("a manifest must come with offset 0");
    if (chunk.manifest().version() != chunk.version()) {
      return fail("the manifest is of another version");
    }
    partial_ = std::make_unique<WeightVersion>();
    partial_->manifest = chunk.manifest();
    if (chunk.manifest().total_bytes() > (uint64_t{1} << 40)) {
      return fail("the manifest announces more than 1 TiB");
    }
    {
      absl::MutexLock lock(&spare_->mu);
      if (spare_->bytes.capacity() >= chunk.manifest().total_bytes()) {
        partial_->bytes.swap(spare_->bytes);
        partial_->bytes.clear();  // keeps the capacity
      }
    }
    partial_->bytes.reserve(chunk.manifest().total_bytes());
    next_offset_ = 0;
    running_crc_ = 0;
  }
  if (!partial_) return fail("no manifest: the version's first chunk was not seen");
  if (chunk.version() != partial_->manifest.version()) {
    return fail(absl::StrCat("expected version ", partial_->manifest.version()));
  }
  if (chunk.offset() != next_offset_) {
    return fail(absl::StrCat("expected offset ", next_offset_));
  }
  const std::string& data = chunk.data();
  if (data.size() > partial_->manifest.total_bytes() - next_offset_) {
    return fail("data runs past the version's size");
  }
  const uint32_t crc = Crc32c(data.data(), data.size());
  if (crc != chunk.crc32c()) return fail("chunk checksum mismatch");
  partial_->bytes.append(data);
  running_crc_ = Crc32cCombine(running_crc_, crc, data.size());
  next_offset_ += data.size();
  if (!chunk.last()) return std::shared_ptr<WeightVersion>();
  if (next_offset_ != partial_->manifest.total_bytes()) {
    return fail(absl::StrCat("last chunk ends at ", next_offset_, " of ",
                             partial_->manifest.total_bytes(), " bytes"));
  }
  if (running_crc_ != partial_->manifest.crc32c()) {
    return fail("version checksum mismatch");
  }
  // Offsets and overlaps (the CRC is already checked).
  for (const v1::TensorInfo& t : partial_->manifest.tensors()) {
    if (t.offset() > partial_->bytes.size() ||
        t.num_bytes() > partial_->bytes.size() - t.offset()) {
      return fail(absl::StrCat("tensor ", t.name(), " out of bounds"));
    }
  }
  // Released by the caller, the version leaves its buffer for the next one (the
  // largest buffer is kept; none once the assembler is gone).
  if (partial_->bytes.capacity() > max_spare_bytes_) {
    return std::shared_ptr<WeightVersion>(std::move(partial_));
  }
  std::weak_ptr<Spare> spare = spare_;
  return std::shared_ptr<WeightVersion>(partial_.release(), [spare](WeightVersion* v) {
    if (std::shared_ptr<Spare> s = spare.lock()) {
      absl::MutexLock lock(&s->mu);
      if (v->bytes.capacity() > s->bytes.capacity()) s->bytes.swap(v->bytes);
    }
    delete v;
  });
}

}  // namespace nbrl::common
