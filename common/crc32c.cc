#include "common/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// Folding with carry-less multiplication (VPCLMULQDQ on 512-bit registers), for
// the long pieces of weight chunks: four 64-byte accumulators, 256 bytes a round.
//
// A 128-bit lane R, loaded little-endian, holds message bits in order (bit k is
// the k-th bit of the lane; reflected CRCs take each byte's low bit first), so as a
// polynomial bit k is the coefficient of x^(127-k), counted from the lane's end.
// Moving R forward by D bits is R * x^D mod P: with L its low and H its high 64
// bits (as polynomials of degree < 64 in the same reflected order),
//   R * x^D = L * x^(64+D) + H * x^D.
// A carry-less product of two reflected 64-bit values lands one bit short of a
// 128-bit lane (it has 127 bits), i.e. it is the product times x; a constant c of
// degree < 32 in a qword's low 32 bits, reflected, stands for x^32 * c. So
//   L * x^(64+D)  ==  clmul(L, reflect32(x^(D+31) mod P))
//   H * x^D       ==  clmul(H, reflect32(x^(D-33) mod P))
// and the sum is a 128-bit lane (degree < 96 + 1) congruent to R * x^D, which is
// XORed into the lane D bits further on. The folded 128 bits R of a message M end
// where M ends, so CRC_0(M) = CRC_0(R): the crc32 instruction over R's 16 bytes
// from a zero register gives the register after M (the initial register is XORed
// into M's first 32 bits beforehand, as the definition of a CRC has it).
struct FoldConstants {
  // Each as (low qword: for L, high qword: for H) of a 128-bit lane.
  std::array<uint64_t, 2> by2048, by1536, by1024, by512, by384, by256, by128;
};

// x^e mod P (normal bit order, P = 0x1EDC6F41 with x^32 implicit), reflected to
// the CRC's bit order.
uint64_t ReflectedXPowMod(int e) {
  constexpr uint32_t kNormalPoly = 0x1EDC6F41;
  uint32_t r = 1;  // x^0
  for (int i = 0; i < e; ++i) r = (r << 1) ^ ((r & 0x80000000u) ? kNormalPoly : 0);
  uint32_t reflected = 0;
  for (int i = 0; i < 32; ++i) reflected |= ((r >> i) & 1u) << (31 - i);
  return reflected;
}

const FoldConstants& Folds() {
  static const FoldConstants k = [] {
    auto by = [](int d) -> std::array<uint64_t, 2> {
      return {ReflectedXPowMod(d + 31), ReflectedXPowMod(d - 33)};
    };
    return FoldConstants{by(2048), by(1536), by(1024), by(512),
                         by(384),  by(256),  by(128)};
  }();
  return k;
}

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which its
// -Wuninitialized takes for a read of an uninitialized value.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // clang has no such warning, and warns of the name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define NBRL_FOLD_TARGET \
  __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))

NBRL_FOLD_TARGET inline __m512i Broadcast(const std::array<uint64_t, 2>& k) {
  const auto lo = static_cast<long long>(k[0]), hi = static_cast<long long>(k[1]);
  return _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo);
}

// a * x^D + b, lane by lane, for the constants of D.
NBRL_FOLD_TARGET inline __m512i Fold(__m512i a, __m512i k, __m512i b) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a, k, 0x00),
                                   _mm512_clmulepi64_epi128(a, k, 0x11), b, 0x96);
}

NBRL_FOLD_TARGET inline __m128i Fold(__m128i a, const std::array<uint64_t, 2>& k,
                                     __m128i b) {
  const __m128i kk =
      _mm_set_epi64x(static_cast<long long>(k[1]), static_cast<long long>(k[0]));
  return _mm_ternarylogic_epi64(_mm_clmulepi64_si128(a, kk, 0x00),
                                _mm_clmulepi64_si128(a, kk, 0x11), b, 0x96);
}

// Loads 64 bytes at p + at, storing them at dst + at (64-byte aligned) with kCopy:
// a streaming store of a whole cache line, which skips reading the line in first
// (a 512 MiB destination is not in cache). Partial lines are stored normally: a
// line written partly by streaming stores and partly by plain ones is flushed
// half-full, which measured slower than plain stores altogether.
template <bool kCopy>
NBRL_FOLD_TARGET inline __m512i Load(const uint8_t* p, uint8_t* dst, size_t at) {
  const __m512i v = _mm512_loadu_si512(p + at);
  if constexpr (kCopy) _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + at), v);
  return v;
}

// The register after the first *done bytes of `p` (n >= 256; *done is a multiple
// of 16 and n - *done < 16), from register `c`. With kCopy, those bytes are also
// copied to `dst` (64-byte aligned), each stored as it is loaded.
template <bool kCopy>
NBRL_FOLD_TARGET uint32_t FoldCrc(const uint8_t* p, uint8_t* dst, size_t n, uint32_t c,
                                  size_t* done) {
#define load(at) Load<kCopy>(p, dst, at)
  __m512i a0 = _mm512_xor_si512(
      load(0), _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(c))));
  __m512i a1 = load(64), a2 = load(128), a3 = load(192);
  size_t at = 256;
  const FoldConstants& k = Folds();
  const __m512i k2048 = Broadcast(k.by2048);
  for (; n - at >= 256; at += 256) {
    a0 = Fold(a0, k2048, load(at));
    a1 = Fold(a1, k2048, load(at + 64));
    a2 = Fold(a2, k2048, load(at + 128));
    a3 = Fold(a3, k2048, load(at + 192));
  }
  __m512i z = Fold(a0, Broadcast(k.by1536),
                   Fold(a1, Broadcast(k.by1024), Fold(a2, Broadcast(k.by512), a3)));
  for (; n - at >= 64; at += 64) z = Fold(z, Broadcast(k.by512), load(at));
#undef load
  __m128i r = Fold(_mm512_extracti32x4_epi32(z, 0), k.by384,
                   Fold(_mm512_extracti32x4_epi32(z, 1), k.by256,
                        Fold(_mm512_extracti32x4_epi32(z, 2), k.by128,
                             _mm512_extracti32x4_epi32(z, 3))));
  for (; n - at >= 16; at += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at));
    if constexpr (kCopy) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + at), v);
    r = Fold(r, k.by128, v);
  }
  *done = at;
  uint64_t reg = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(r)));
  reg = _mm_crc32_u64(
      reg, static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(r, r))));
  return static_cast<uint32_t>(reg);
}
#undef NBRL_FOLD_TARGET
#pragma GCC diagnostic pop

// Pieces shorter than this take the crc32 instruction.
constexpr size_t kMinFoldBytes = 256;

bool HasFolding() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("vpclmulqdq") &&
                          __builtin_cpu_supports("pclmul") && HasSse42();
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
  if (n >= kMinFoldBytes && HasFolding()) {
    size_t done = 0;
    c = FoldCrc<false>(p, nullptr, n, c, &done);
    return ~HardwareCrc(p + done, n - done, c);
  }
  if (HasSse42()) return ~HardwareCrc(p, n, c);
#endif
  return ~TableCrc(p, n, c);
}

uint32_t Crc32cCopy(void* dst, const void* src, size_t n, uint32_t crc) {
  if (n == 0) return crc;
#if defined(__x86_64__)
  const size_t head = (64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64;
  if (n >= kMinFoldBytes + head && HasFolding()) {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    uint8_t* d = static_cast<uint8_t*>(dst);
    std::memcpy(d, p, head);
    uint32_t c = HardwareCrc(p, head, ~crc);
    p += head;
    d += head;
    n -= head;
    size_t done = 0;
    c = FoldCrc<true>(p, d, n, c, &done);
    _mm_sfence();  // streaming stores are weakly ordered: done before we return
    std::memcpy(d + done, p + done, n - done);
    return ~HardwareCrc(p + done, n - done, c);
  }
#endif
  // Without folding, checksumming a piece and then copying it while it is in
  // cache is as fast as one loop doing both.
  std::memcpy(dst, src, n);
  return Crc32c(src, n, crc);
}

namespace internal {
uint32_t Crc32cPortable(const void* data, size_t n, uint32_t crc) {
  return ~TableCrc(static_cast<const uint8_t*>(data), n, ~crc);
}

uint32_t Crc32cWithoutFolding(const void* data, size_t n, uint32_t crc) {
#if defined(__x86_64__)
  if (HasSse42()) return ~HardwareCrc(static_cast<const uint8_t*>(data), n, ~crc);
#endif
  return Crc32cPortable(data, n, crc);
}

const char* Crc32cMethod() {
#if defined(__x86_64__)
  if (HasFolding()) return "vpclmulqdq folding (pieces of 256 bytes and more)";
  if (HasSse42()) return "sse4.2 crc32, three lanes";
#endif
  return "table";
}
}  // namespace internal

}  // namespace nbrl::common
