// A weight version on the wire: a manifest (tensor names, dtypes, shapes, offsets,
// CRC-32C of the whole) and the flat bytes of all tensors back to back, sent as
// nbrl.v1.WeightChunk messages with offsets and per-chunk checksums.
//
// A version is cut into chunks by ChunkCount / ChunkHeader / ChunkData (the
// learner's stream sends each header's encoding followed by the data, uncopied);
// ForEachChunk gives the same chunks as whole messages. A subscriber feeds the
// chunks it receives to a WeightAssembler, which checks order, offsets, sizes and
// both checksums and hands back the complete version. Nothing here knows tensors:
// model/weight_codec.h converts to and from them.
#ifndef NBRL_COMMON_WEIGHT_STREAM_H_
#define NBRL_COMMON_WEIGHT_STREAM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nbrl/v1/learner.pb.h"

namespace nbrl::common {

struct WeightVersion {
  v1::WeightManifest manifest;
  std::string bytes;  // manifest.total_bytes() long
  // Optional, for a publisher: the CRC-32C of each chunk of `chunk_crc_bytes` data
  // bytes (as ChunkData cuts them), computed where the bytes were written
  // (model::EncodeWeights copies and checksums in one pass), so that the streams
  // need not read the version once more for them. Empty: not known. Never sent;
  // a subscriber checks every chunk against the bytes it received.
  size_t chunk_crc_bytes = 0;
  std::vector<uint32_t> chunk_crcs;
};

// Checks a manifest against its bytes: tensors within bounds and not overlapping,
// total size, CRC. DataLoss naming the problem.
absl::Status ValidateWeightVersion(const WeightVersion& version);

// How many chunks `version` is cut into at `chunk_bytes` (at least 1).
size_t ChunkCount(const WeightVersion& version, size_t chunk_bytes);

// Chunk `index` (< ChunkCount) of `version` without its data: version, offset,
// crc32c (given), `last`, and the manifest on the first chunk. Its data is
// ChunkData(version, chunk_bytes, index), a view into version.bytes; a sender may
// append it as field 4 after the header's encoding without copying it (protobuf
// parsers accept fields in any order).
v1::WeightChunk ChunkHeader(const WeightVersion& version, size_t chunk_bytes,
                            size_t index, uint32_t crc32c);
absl::string_view ChunkData(const WeightVersion& version, size_t chunk_bytes,
                            size_t index);

// The CRC-32C of chunk `index` of `version` (ChunkData's bytes), and of each of
// its ChunkCount chunks, read from its bytes.
uint32_t ChunkCrc(const WeightVersion& version, size_t chunk_bytes, size_t index);
std::vector<uint32_t> ChunkCrcs(const WeightVersion& version, size_t chunk_bytes);

// Calls `write` with each chunk of `version` in order (the first carries the
// manifest, the last has `last` set), `chunk_bytes` of data each (the last may be
// shorter; a version of 0 bytes is one chunk). Stops and returns false as soon as
// `write` returns false (the stream broke).
bool ForEachChunk(const WeightVersion& version, size_t chunk_bytes,
                  const std::function<bool(const v1::WeightChunk&)>& write);

// Reassembles versions from chunks. Not thread-safe (one per stream), but the
// versions it returns may be used and released on any thread.
//
// Each chunk's bytes are read once: copied into the version while its CRC is
// computed (Crc32cCopy), which is folded into the version's with Crc32cCombine.
// A version's buffer is recycled: when the caller releases a finished version,
// its buffer (already faulted in) is kept for the next one, so a subscriber that
// applies each version and lets it go does not allocate and page in the whole
// version again each time (on a 2-core VM, faulting in 2 GiB took longer than
// receiving it). The spare buffer costs memory between versions, so only versions
// up to `max_spare_bytes` are recycled: by default an eighth of the memory the
// process may use, at least 1 GiB (a 7B model's 15 GB stays resident on a 256 GB
// GPU node, not on a 64 GB one or in a container limited to 64 GB).
class WeightAssembler {
 public:
  // max(1 GiB, usable memory / 8): the machine's memory, or the cgroup's limit
  // where lower.
  static uint64_t DefaultMaxSpareBytes();
  WeightAssembler() : WeightAssembler(DefaultMaxSpareBytes()) {}
  explicit WeightAssembler(uint64_t max_spare_bytes);

  // Feeds one chunk. Returns the finished version on its last chunk, nullptr
  // while one is incomplete, DataLoss for a chunk that does not fit (wrong
  // version, offset or size, bad checksum, missing manifest). After an error the
  // partial version is dropped and the next version must start with its manifest.
  absl::StatusOr<std::shared_ptr<WeightVersion>> Add(const v1::WeightChunk& chunk);
  // The same for a chunk whose data is given apart from its header (whose own
  // data is ignored), in pieces: the receive buffers of a raw stream
  // (weight_reader.h). Each piece is checksummed and copied once.
  absl::StatusOr<std::shared_ptr<WeightVersion>> Add(
      const v1::WeightChunk& header, absl::Span<const absl::string_view> data);

 private:
  struct Spare;  // the recycled buffer, shared with the versions' deleters
  const uint64_t max_spare_bytes_;
  std::shared_ptr<Spare> spare_;
  std::unique_ptr<WeightVersion> partial_;
  uint64_t next_offset_ = 0;
  uint32_t running_crc_ = 0;
};

}  // namespace nbrl::common

#endif  // NBRL_COMMON_WEIGHT_STREAM_H_
