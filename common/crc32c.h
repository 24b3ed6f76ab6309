// CRC-32C (Castagnoli), the checksum of weight chunks and versions. Folds with
// carry-less multiplication on 512-bit registers (VPCLMULQDQ) when the CPU has it,
// takes the SSE4.2 crc32 instruction otherwise (and for short pieces), a table
// without either; all give the same values (weight_stream_test.cc).
#ifndef NBRL_COMMON_CRC32C_H_
#define NBRL_COMMON_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace nbrl::common {

// CRC-32C of `n` bytes, continuing from `crc` (the value of the bytes before them;
// 0 to start).
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

// Copies `n` bytes from `src` to `dst` (which must not overlap) and returns their
// CRC-32C, continuing from `crc`: one pass over the bytes where the CPU folds.
// Then, for pieces of 256 bytes and more, the whole 64-byte lines of `dst` are
// written with streaming stores that bypass the caches (fenced before returning),
// as suits a destination that is large and read later: a weight version being
// assembled or encoded. Otherwise a memcpy, then Crc32c.
uint32_t Crc32cCopy(void* dst, const void* src, size_t n, uint32_t crc = 0);

// The CRC-32C of A followed by B, from crc_a = Crc32c(A), crc_b = Crc32c(B) and
// B's length, without reading the bytes: O(log len_b) small matrix products. A
// receiver that checks each chunk's CRC gets the whole stream's from them instead
// of a second pass over the data.
uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

namespace internal {
// The table implementation, always (for testing it against the hardware one).
uint32_t Crc32cPortable(const void* data, size_t n, uint32_t crc = 0);
// The crc32 instruction without folding where the CPU has it, the table otherwise.
uint32_t Crc32cWithoutFolding(const void* data, size_t n, uint32_t crc = 0);
// Which implementation Crc32c uses on this CPU, in words.
const char* Crc32cMethod();
}  // namespace internal

}  // namespace nbrl::common

#endif  // NBRL_COMMON_CRC32C_H_
