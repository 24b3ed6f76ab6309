#include "common/crc32c.h"

#include <array>
#include <cstring>

namespace nbrl::common {
namespace {

constexpr uint32_t kPoly = 0x82F63B78;  // reflected Castagnoli polynomial

std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (kPoly & (0u - (c & 1)));
    t[i] = c;
  }
  return t;
}

uint32_t TableCrc(const uint8_t* p, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = MakeTable();
  while (n--) crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xFF];
  return crc;
}

// CRC arithmetic over GF(2): a 32x32 bit matrix is 32 columns, each a uint32_t.
// Appending zero bits to a message is linear in its CRC register, so appending
// len_b zero bytes is a matrix power, computed by repeated squaring.
uint32_t MatrixTimes(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (int i = 0; vec != 0; ++i, vec >>= 1) {
    if (vec & 1) sum ^= mat[i];
  }
  return sum;
}

void MatrixSquare(uint32_t* square, const uint32_t* mat) {
  for (int i = 0; i < 32; ++i) square[i] = MatrixTimes(mat, mat[i]);
}

// The operator that advances a CRC register over `len` zero bytes.
void ZeroBytesOperator(uint64_t len, uint32_t* op) {
  uint32_t power[32], square[32];
  // One zero bit: shift right, folding in the polynomial when the low bit falls
  // off. Squared three times: one zero byte.
  power[0] = kPoly;
  for (int i = 1; i < 32; ++i) power[i] = 1u << (i - 1);
  for (int k = 0; k < 3; ++k) {
    MatrixSquare(square, power);
    std::memcpy(power, square, sizeof(power));
  }
  for (int i = 0; i < 32; ++i) op[i] = 1u << i;  // identity
  while (len != 0) {
    if (len & 1) {
      for (int i = 0; i < 32; ++i) op[i] = MatrixTimes(power, op[i]);
    }
    len >>= 1;
    if (len != 0) {
      MatrixSquare(square, power);
      std::memcpy(power, square, sizeof(power));
    }
  }
}

#if defined(__x86_64__)
// Bytes per lane of the interleaved loop: three lanes run at once, since the crc32
// instruction takes 3 cycles but can start one per cycle, and their registers are
// joined with the zero-bytes operator (CRC is linear in the register).
constexpr size_t kLaneBytes = 8192;

const uint32_t* LaneShift() {
  static const std::array<uint32_t, 32> op = [] {
    std::array<uint32_t, 32> a;
    ZeroBytesOperator(kLaneBytes, a.data());
    return a;
  }();
  return op.data();
}

__attribute__((target("sse4.2"))) uint32_t HardwareCrc(const uint8_t* p, size_t n,
                                                       uint32_t crc) {
  uint64_t c = crc;
  if (n >= 3 * kLaneBytes) {
    const uint32_t* shift = LaneShift();
    do {
      uint64_t a = c, b = 0, d = 0;
      for (size_t i = 0; i < kLaneBytes; i += 8) {
        uint64_t wa, wb, wd;
        std::memcpy(&wa, p + i, 8);
        std::memcpy(&wb, p + kLaneBytes + i, 8);
        std::memcpy(&wd, p + 2 * kLaneBytes + i, 8);
        a = __builtin_ia32_crc32di(a, wa);
        b = __builtin_ia32_crc32di(b, wb);
        d = __builtin_ia32_crc32di(d, wd);
      }
      // register(A B D) = shift(shift(register(A)) ^ register0(B)) ^ register0(D)
      c = MatrixTimes(shift, MatrixTimes(shift, static_cast<uint32_t>(a)) ^
                                 static_cast<uint32_t>(b)) ^
          static_cast<uint32_t>(d);
      p += 3 * kLaneBytes;
      n -= 3 * kLaneBytes;
    } while (n >= 3 * kLaneBytes);
  }
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}

bool HasSse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

}  // namespace

uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  if (len_b == 0) return crc_a;
  // Chunks of one stream mostly have the same length: keep the last operator.
  thread_local uint64_t cached_len = 0;
  thread_local uint32_t cached_op[32];
  if (len_b != cached_len) {
    ZeroBytesOperator(len_b, cached_op);
    cached_len = len_b;
  }
  // The pre- and post-inversion of the two CRCs cancel out in the XOR.
  return MatrixTimes(cached_op, crc_a) ^ crc_b;
}

uint32_t Crc32c(const void* data, size_t n, uint32_t crc) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (HasSse42()) return ~HardwareCrc(p, n, c);
#endif
  return ~TableCrc(p, n, c);
}

namespace internal {
uint32_t Crc32cPortable(const void* data, size_t n, uint32_t crc) {
  return ~TableCrc(static_cast<const uint8_t*>(data), n, ~crc);
}
}  // namespace internal

}  // namespace nbrl::common
