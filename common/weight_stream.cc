#include "common/weight_stream.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crc32c.h"

namespace nbrl::common {
namespace {

// 0 means the default chunk size, 1 MiB.
size_t EffectiveChunkBytes(size_t chunk_bytes) {
  return chunk_bytes == 0 ? size_t{1} << 20 : chunk_bytes;
}

}  // namespace

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

size_t ChunkCount(const WeightVersion& v, size_t chunk_bytes) {
  chunk_bytes = EffectiveChunkBytes(chunk_bytes);
  const uint64_t total = v.bytes.size();
  return total == 0 ? 1 : static_cast<size_t>((total + chunk_bytes - 1) / chunk_bytes);
}

absl::string_view ChunkData(const WeightVersion& v, size_t chunk_bytes, size_t index) {
  chunk_bytes = EffectiveChunkBytes(chunk_bytes);
  const uint64_t offset = uint64_t{index} * chunk_bytes, total = v.bytes.size();
  if (offset >= total) return absl::string_view();
  return absl::string_view(v.bytes).substr(offset, chunk_bytes);
}

v1::WeightChunk ChunkHeader(const WeightVersion& v, size_t chunk_bytes, size_t index,
                            uint32_t crc32c) {
  v1::WeightChunk chunk;
  chunk.set_version(v.manifest.version());
  if (index == 0) *chunk.mutable_manifest() = v.manifest;
  chunk.set_offset(uint64_t{index} * EffectiveChunkBytes(chunk_bytes));
  chunk.set_crc32c(crc32c);
  chunk.set_last(index + 1 == ChunkCount(v, chunk_bytes));
  return chunk;
}

uint32_t ChunkCrc(const WeightVersion& v, size_t chunk_bytes, size_t index) {
  const absl::string_view data = ChunkData(v, chunk_bytes, index);
  return Crc32c(data.data(), data.size());
}

std::vector<uint32_t> ChunkCrcs(const WeightVersion& v, size_t chunk_bytes) {
  std::vector<uint32_t> crcs(ChunkCount(v, chunk_bytes));
  for (size_t i = 0; i < crcs.size(); ++i) crcs[i] = ChunkCrc(v, chunk_bytes, i);
  return crcs;
}

bool ForEachChunk(const WeightVersion& v, size_t chunk_bytes,
                  const std::function<bool(const v1::WeightChunk&)>& write) {
  const size_t count = ChunkCount(v, chunk_bytes);
  for (size_t i = 0; i < count; ++i) {
    v1::WeightChunk chunk = ChunkHeader(v, chunk_bytes, i, ChunkCrc(v, chunk_bytes, i));
    const absl::string_view data = ChunkData(v, chunk_bytes, i);
    chunk.set_data(data.data(), data.size());
    if (!write(chunk)) return false;
  }
  return true;
}

struct WeightAssembler::Spare {
  absl::Mutex mu;
  std::string bytes ABSL_GUARDED_BY(mu);
};

namespace {

// The memory this process may use: the machine's, or its cgroup's limit when
// lower (a container's: cgroup v2's memory.max, v1's memory.limit_in_bytes, as
// mounted in a container whose cgroup is the mount's root). 0 when unknown.
uint64_t UsableMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  uint64_t memory = pages > 0 && page > 0
                        ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page)
                        : 0;
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    uint64_t limit = 0;
    if (in >> limit && limit > 0 && (memory == 0 || limit < memory)) memory = limit;
  }
  return memory;
}

}  // namespace

uint64_t WeightAssembler::DefaultMaxSpareBytes() {
  static const uint64_t bytes =
      std::max<uint64_t>(uint64_t{1} << 30, UsableMemoryBytes() / 8);
  return bytes;
}

WeightAssembler::WeightAssembler(uint64_t max_spare_bytes)
    : max_spare_bytes_(max_spare_bytes), spare_(std::make_shared<Spare>()) {}

absl::StatusOr<std::shared_ptr<WeightVersion>> WeightAssembler::Add(
    const v1::WeightChunk& chunk) {
  const absl::string_view data = chunk.data();
  return Add(chunk, absl::MakeConstSpan(&data, 1));
}

absl::StatusOr<std::shared_ptr<WeightVersion>> WeightAssembler::Add(
    const v1::WeightChunk& chunk, absl::Span<const absl::string_view> pieces) {
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
        // Keeps its size too (stale bytes, each overwritten before the version
        // is handed out), so that growing it to each chunk's end fills nothing.
        partial_->bytes.swap(spare_->bytes);
        if (partial_->bytes.size() > chunk.manifest().total_bytes()) {
          partial_->bytes.resize(chunk.manifest().total_bytes());
        }
      }
    }
    try {
      partial_->bytes.reserve(chunk.manifest().total_bytes());
    } catch (const std::exception&) {  // bad_alloc, length_error
      return fail(absl::StrCat("cannot allocate the ", chunk.manifest().total_bytes(),
                               " bytes the manifest announces"));
    }
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
  uint64_t size = 0;
  for (absl::string_view piece : pieces) size += piece.size();
  if (size > partial_->manifest.total_bytes() - next_offset_) {
    return fail("data runs past the version's size");
  }
  // Checksum and copy each piece in one pass (a bad chunk drops the partial
  // version, copied bytes and all). A fresh buffer grows chunk by chunk (the
  // zero fill of std::string, one chunk at a time, which also takes its page
  // faults); a recycled one is already long enough and is not filled.
  std::string& bytes = partial_->bytes;
  if (bytes.size() < next_offset_ + size) bytes.resize(next_offset_ + size);
  uint32_t crc = 0;
  uint64_t at = next_offset_;
  for (absl::string_view piece : pieces) {
    crc = Crc32cCopy(bytes.data() + at, piece.data(), piece.size(), crc);
    at += piece.size();
  }
  if (crc != chunk.crc32c()) return fail("chunk checksum mismatch");
  running_crc_ = Crc32cCombine(running_crc_, crc, size);
  next_offset_ += size;
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
