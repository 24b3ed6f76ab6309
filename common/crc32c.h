// CRC-32C (Castagnoli), the checksum of weight chunks and versions. Uses the SSE4.2
// crc32 instruction when the CPU has it, a table otherwise; both give the same
// values (RFC 3720 test vectors in crc32c_test.cc).
#ifndef NBRL_COMMON_CRC32C_H_
#define NBRL_COMMON_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace nbrl::common {

// CRC-32C of `n` bytes, continuing from `crc` (the value of the bytes before them;
// 0 to start).
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

// The CRC-32C of A followed by B, from crc_a = Crc32c(A), crc_b = Crc32c(B) and
// B's length, without reading the bytes: O(log len_b) small matrix products. A
// receiver that checks each chunk's CRC gets the whole stream's from them instead
// of a second pass over the data.
uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

namespace internal {
// The table implementation, always (for testing it against the hardware one).
uint32_t Crc32cPortable(const void* data, size_t n, uint32_t crc = 0);
}  // namespace internal

}  // namespace nbrl::common

#endif  // NBRL_COMMON_CRC32C_H_
