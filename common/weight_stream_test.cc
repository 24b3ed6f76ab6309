#include "common/weight_stream.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::common {
namespace {

using ::testing::HasSubstr;

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 B.4 and the common "123456789" check value.
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  std::string ones(32, '\xff');
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  // Extending equals computing at once.
  std::string s = "hello weights";
  EXPECT_EQ(Crc32c(s.data() + 5, s.size() - 5, Crc32c(s.data(), 5)),
            Crc32c(s.data(), s.size()));
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
}

TEST(Crc32cTest, PortableAndHardwareAgree) {
  std::string data(100003, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 2654435761u >> 13);
  // Around the interleaved loop's 3 x 8 KiB blocks too, and continuing a CRC.
  for (size_t n : {0, 1, 7, 8, 9, 63, 4096, 24575, 24576, 24577, 49157, 100003}) {
    EXPECT_EQ(Crc32c(data.data(), n), internal::Crc32cPortable(data.data(), n)) << n;
    const size_t m = std::min(n, data.size() - 3);
    EXPECT_EQ(Crc32c(data.data() + 3, m, 0x1234567u),
              internal::Crc32cPortable(data.data() + 3, m, 0x1234567u))
        << m;
  }
  EXPECT_EQ(internal::Crc32cPortable("123456789", 9), 0xE3069283u);
}

// Folding (where the CPU has it) and the crc32 instruction against the table, at
// every length around the fold's 256-, 64- and 16-byte steps, from every
// alignment, continuing a CRC; and the copying form, which must copy exactly.
TEST(Crc32cTest, FoldingCopyingAndPlainAgreeWithTheTable) {
  std::cout << "CRC-32C method on this CPU: " << internal::Crc32cMethod() << "\n";
  std::string data(70000, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>((i * 2654435761u) >> 11);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 1100; ++n) lengths.push_back(n);
  for (size_t n : {4095, 4096, 4097, 65535, 65536, 69000}) lengths.push_back(n);
  std::string copy(data.size() + 128, '\0');
  // copy.data() + base is on a 64-byte line; the destinations below are 0, 7, 35,
  // 48 and 57 bytes past one (the streaming stores start at the next line).
  const size_t base = (64 - reinterpret_cast<uintptr_t>(copy.data()) % 64) % 64;
  for (size_t n : lengths) {
    for (size_t at : {0, 1, 5, 16, 63}) {
      const char* p = data.data() + at;
      const uint32_t want = internal::Crc32cPortable(p, n, 0xDEADBEEFu);
      ASSERT_EQ(Crc32c(p, n, 0xDEADBEEFu), want) << n << " from " << at;
      ASSERT_EQ(internal::Crc32cWithoutFolding(p, n, 0xDEADBEEFu), want) << n;
      std::fill(copy.begin(), copy.end(), '\x5a');
      const size_t to = base + (at * 7) % 64;
      ASSERT_EQ(Crc32cCopy(copy.data() + to, p, n, 0xDEADBEEFu), want) << n;
      ASSERT_EQ(copy.compare(to, n, p, n), 0) << "copy of " << n << " bytes";
      ASSERT_EQ(copy.find_first_not_of('\x5a', to + n), std::string::npos) << n;
      ASSERT_EQ(copy.substr(0, to).find_first_not_of('\x5a'), std::string::npos) << n;
    }
  }
  // A single flipped bit anywhere changes the value (a fold that dropped a lane
  // would not see it).
  std::string flip = data.substr(0, 4096);
  const uint32_t clean = Crc32c(flip.data(), flip.size());
  for (size_t bit = 0; bit < flip.size() * 8; bit += 97) {
    flip[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    ASSERT_NE(Crc32c(flip.data(), flip.size()), clean) << bit;
    flip[bit / 8] ^= static_cast<char>(1 << (bit % 8));
  }
}

TEST(Crc32cTest, CombineEqualsOnePass) {
  std::string data(70001, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 2654435761u >> 11);
  for (size_t split : {0, 1, 8, 4095, 35000, 70000, 70001}) {
    const uint32_t a = Crc32c(data.data(), split);
    const uint32_t b = Crc32c(data.data() + split, data.size() - split);
    EXPECT_EQ(Crc32cCombine(a, b, data.size() - split),
              Crc32c(data.data(), data.size()))
        << split;
  }
  // Chained over many pieces, as the assembler does.
  uint32_t running = 0;
  for (size_t at = 0; at < data.size(); at += 1000) {
    const size_t n = std::min<size_t>(1000, data.size() - at);
    running = Crc32cCombine(running, Crc32c(data.data() + at, n), n);
  }
  EXPECT_EQ(running, Crc32c(data.data(), data.size()));
  // A length beyond 4 GiB (only the arithmetic: zeros extend the CRC).
  const uint64_t big = (uint64_t{1} << 32) + 5;
  EXPECT_EQ(Crc32cCombine(Crc32c("ab", 2), 0, 0), Crc32c("ab", 2));
  EXPECT_NE(Crc32cCombine(Crc32c("ab", 2), 0, big), Crc32c("ab", 2));
}

WeightVersion MakeVersion(uint64_t version, size_t bytes) {
  WeightVersion v;
  v.bytes.resize(bytes);
  for (size_t i = 0; i < bytes; ++i) v.bytes[i] = static_cast<char>(i * 131 + version);
  v.manifest.set_version(version);
  v.manifest.set_step(version * 10);
  v1::TensorInfo* a = v.manifest.add_tensors();
  a->set_name("a");
  a->set_dtype(v1::DTYPE_F32);
  a->add_shape(static_cast<int64_t>(bytes / 8));
  a->set_offset(0);
  a->set_num_bytes(bytes / 2);
  v1::TensorInfo* b = v.manifest.add_tensors();
  b->set_name("b");
  b->set_offset(bytes / 2);
  b->set_num_bytes(bytes - bytes / 2);
  v.manifest.set_total_bytes(bytes);
  v.manifest.set_crc32c(Crc32c(v.bytes.data(), bytes));
  return v;
}

TEST(WeightStreamTest, ChunksReassembleExactly) {
  WeightVersion v = MakeVersion(3, 10000);
  ASSERT_TRUE(ValidateWeightVersion(v).ok());
  WeightAssembler assembler;
  int chunks = 0;
  std::shared_ptr<WeightVersion> done;
  ASSERT_TRUE(ForEachChunk(v, 4096, [&](const v1::WeightChunk& c) {
    ++chunks;
    EXPECT_EQ(c.has_manifest(), c.offset() == 0);
    auto r = assembler.Add(c);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok() && *r) done = *r;
    return true;
  }));
  EXPECT_EQ(chunks, 3);
  ASSERT_NE(done, nullptr);
  EXPECT_EQ(done->bytes, v.bytes);
  EXPECT_EQ(done->manifest.version(), 3u);
}

TEST(WeightStreamTest, EmptyVersionIsOneChunk) {
  WeightVersion v = MakeVersion(1, 0);
  WeightAssembler assembler;
  int chunks = 0;
  ForEachChunk(v, 4096, [&](const v1::WeightChunk& c) {
    ++chunks;
    auto r = assembler.Add(c);
    EXPECT_TRUE(r.ok() && *r != nullptr);
    return true;
  });
  EXPECT_EQ(chunks, 1);
}

std::vector<v1::WeightChunk> Chunks(const WeightVersion& v, size_t size) {
  std::vector<v1::WeightChunk> out;
  ForEachChunk(v, size, [&](const v1::WeightChunk& c) {
    out.push_back(c);
    return true;
  });
  return out;
}

// The learner's stream sends ChunkHeader's encoding and ChunkData apart; put
// together they are ForEachChunk's messages.
TEST(WeightStreamTest, HeaderAndDataMakeTheSameChunks) {
  WeightVersion v = MakeVersion(4, 9000);
  const std::vector<v1::WeightChunk> whole = Chunks(v, 4000);
  ASSERT_EQ(whole.size(), 3u);
  ASSERT_EQ(ChunkCount(v, 4000), 3u);
  for (size_t i = 0; i < whole.size(); ++i) {
    absl::string_view data = ChunkData(v, 4000, i);
    v1::WeightChunk apart = ChunkHeader(v, 4000, i, Crc32c(data.data(), data.size()));
    EXPECT_TRUE(apart.data().empty());
    apart.set_data(data.data(), data.size());
    EXPECT_EQ(apart.SerializeAsString(), whole[i].SerializeAsString()) << i;
  }
  EXPECT_EQ(ChunkData(v, 4000, 2).size(), 1000u);
  EXPECT_EQ(ChunkCount(MakeVersion(1, 0), 4000), 1u);  // one empty chunk
  EXPECT_TRUE(ChunkData(MakeVersion(1, 0), 4000, 0).empty());
}

// Assembles `v` with `a`; the finished version (nullptr on any error).
std::shared_ptr<WeightVersion> Assemble(WeightAssembler& a, const WeightVersion& v) {
  std::shared_ptr<WeightVersion> done;
  for (const v1::WeightChunk& c : Chunks(v, 3000)) {
    auto r = a.Add(c);
    if (!r.ok()) return nullptr;
    if (*r) done = *r;
  }
  return done;
}

TEST(WeightStreamTest, ReleasedVersionsLendTheirBufferToTheNext) {
  WeightAssembler a;
  std::shared_ptr<WeightVersion> first = Assemble(a, MakeVersion(1, 10000));
  ASSERT_NE(first, nullptr);
  const char* first_buffer = first->bytes.data();
  first.reset();  // released: its buffer becomes the spare
  std::shared_ptr<WeightVersion> second = Assemble(a, MakeVersion(2, 9000));
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->bytes.data(), first_buffer);
  EXPECT_EQ(second->bytes, MakeVersion(2, 9000).bytes);
  // second is still held: third gets a buffer of its own and second is untouched.
  std::shared_ptr<WeightVersion> third = Assemble(a, MakeVersion(3, 9000));
  ASSERT_NE(third, nullptr);
  EXPECT_NE(third->bytes.data(), second->bytes.data());
  EXPECT_EQ(second->bytes, MakeVersion(2, 9000).bytes);
  EXPECT_EQ(third->bytes, MakeVersion(3, 9000).bytes);
  // The spare keeps its last size: a smaller version cuts it, a larger one that
  // fits its capacity grows it in place, and every byte is the new version's.
  second.reset();
  third.reset();
  for (const auto& [number, size] :
       std::vector<std::pair<uint64_t, size_t>>{{10, 2000}, {11, 9500}, {12, 10000}}) {
    std::shared_ptr<WeightVersion> v = Assemble(a, MakeVersion(number, size));
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->bytes.data(), first_buffer) << size;
    EXPECT_EQ(v->bytes, MakeVersion(number, size).bytes) << size;
  }
  // Past max_spare_bytes a released version's buffer is freed, not kept: while
  // `held` lives, `big` is released and `next` needs a buffer of its own again.
  WeightAssembler small(/*max_spare_bytes=*/4096);
  std::shared_ptr<WeightVersion> held = Assemble(small, MakeVersion(6, 3000));
  std::shared_ptr<WeightVersion> big = Assemble(small, MakeVersion(7, 9000));
  ASSERT_NE(held, nullptr);
  ASSERT_NE(big, nullptr);
  big.reset();
  held.reset();  // 3000 bytes: within the bound, kept as the spare
  std::shared_ptr<WeightVersion> next = Assemble(small, MakeVersion(8, 9000));
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->bytes, MakeVersion(8, 9000).bytes);
  // A version released after its assembler is gone is simply freed.
  WeightAssembler* b = new WeightAssembler;
  std::shared_ptr<WeightVersion> orphan = Assemble(*b, MakeVersion(5, 5000));
  delete b;
  ASSERT_NE(orphan, nullptr);
  EXPECT_EQ(orphan->bytes, MakeVersion(5, 5000).bytes);
  orphan.reset();
}

TEST(WeightStreamTest, CorruptOrOutOfOrderChunksAreDataLoss) {
  WeightVersion v = MakeVersion(2, 9000);
  auto chunks = Chunks(v, 4000);
  ASSERT_EQ(chunks.size(), 3u);
  {
    WeightAssembler a;
    auto bad = chunks[1];
    bad.mutable_data()->at(7) ^= 1;
    ASSERT_TRUE(a.Add(chunks[0]).ok());
    auto r = a.Add(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("chunk checksum mismatch"));
    // After an error, a chunk without a manifest is refused.
    EXPECT_THAT(std::string(a.Add(chunks[2]).status().message()),
                HasSubstr("no manifest"));
  }
  {
    WeightAssembler a;
    ASSERT_TRUE(a.Add(chunks[0]).ok());
    EXPECT_THAT(std::string(a.Add(chunks[2]).status().message()),
                HasSubstr("expected offset 4000"));
  }
  {
    WeightAssembler a;
    EXPECT_THAT(std::string(a.Add(chunks[1]).status().message()),
                HasSubstr("no manifest"));
  }
  {
    // Data and chunk CRC consistent, but the whole version's CRC is wrong.
    WeightVersion tampered = v;
    tampered.manifest.set_crc32c(v.manifest.crc32c() ^ 1);
    WeightAssembler a;
    absl::Status last;
    for (const auto& c : Chunks(tampered, 4000)) last = a.Add(c).status();
    EXPECT_THAT(std::string(last.message()), HasSubstr("version checksum mismatch"));
  }
  {
    // Recovery: a fresh version with its manifest is accepted after an error.
    WeightAssembler a;
    EXPECT_FALSE(a.Add(chunks[1]).ok());
    std::shared_ptr<WeightVersion> done;
    for (const auto& c : chunks) done = *a.Add(c);
    ASSERT_NE(done, nullptr);
  }
}

TEST(WeightStreamTest, ValidateFindsBadManifests) {
  WeightVersion v = MakeVersion(4, 100);
  v.manifest.mutable_tensors(1)->set_num_bytes(1000);
  EXPECT_THAT(std::string(ValidateWeightVersion(v).message()), HasSubstr("outside"));
  v = MakeVersion(4, 100);
  v.manifest.mutable_tensors(1)->set_offset(10);
  EXPECT_THAT(std::string(ValidateWeightVersion(v).message()), HasSubstr("overlap"));
  v = MakeVersion(4, 100);
  v.bytes[3] ^= 1;
  EXPECT_THAT(std::string(ValidateWeightVersion(v).message()), HasSubstr("checksum"));
}

}  // namespace
}  // namespace nbrl::common
