#include "model/weight_codec.h"

#include "common/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;

TEST(WeightCodecTest, RoundTripKeepsNamesShapesDtypesAndValues) {
  torch::manual_seed(0);
  TensorMap in;
  in["model.embed_tokens.weight"] = torch::randn({7, 4});
  in["model.norm.weight"] = torch::randn({4}).to(torch::kBFloat16);
  in["lm_head.weight"] =
      torch::randn({7, 4}).to(torch::kFloat16).t();  // non-contiguous
  auto v = EncodeWeights(in, /*version=*/5, /*step=*/50);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->manifest.version(), 5u);
  EXPECT_EQ(v->manifest.tensors_size(), 3);
  auto out = DecodeWeights(*v);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out->count(name)) << name;
    EXPECT_EQ((*out)[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ((*out)[name].sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal((*out)[name], t.contiguous())) << name;
  }
}

// The chunk CRCs from the encoder's single pass are those of the bytes, for
// chunks inside a tensor, spanning tensors and past the last one; the version's
// CRC is combined from them.
TEST(WeightCodecTest, ChunkCrcsFromTheCopyMatchTheBytes) {
  torch::manual_seed(1);
  TensorMap in;
  in["a"] = torch::randn({37, 11});                      // 1628 bytes
  in["b"] = torch::randn({5}).to(torch::kBFloat16);      // 10
  in["c"] = torch::randn({300, 3}).to(torch::kFloat16);  // 1800
  in["d"] = torch::empty({0, 4});                        // none
  for (size_t chunk : {1, 7, 256, 1000, 1628, 1638, 3438, 4096}) {
    auto v = EncodeWeights(in, 1, 1, chunk);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->chunk_crc_bytes, chunk);
    EXPECT_EQ(v->chunk_crcs, common::ChunkCrcs(*v, chunk)) << chunk;
    EXPECT_EQ(v->manifest.crc32c(), common::Crc32c(v->bytes.data(), v->bytes.size()))
        << chunk;
    EXPECT_TRUE(common::ValidateWeightVersion(*v).ok());
  }
  auto empty = EncodeWeights(TensorMap{}, 1, 1);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->chunk_crcs, std::vector<uint32_t>{0u});
  EXPECT_EQ(empty->chunk_crcs, common::ChunkCrcs(*empty, size_t{1} << 20));
  EXPECT_EQ(EncodeWeights(in, 1, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WeightCodecTest, CorruptVersionsAreDataLoss) {
  TensorMap in;
  in["w"] = torch::ones({3, 3});
  auto v = EncodeWeights(in, 1, 1);
  ASSERT_TRUE(v.ok());
  common::WeightVersion bad = *v;
  bad.bytes[0] ^= 1;
  EXPECT_EQ(DecodeWeights(bad).status().code(), absl::StatusCode::kDataLoss);
  bad = *v;
  bad.manifest.mutable_tensors(0)->set_shape(0, 4);
  EXPECT_THAT(std::string(DecodeWeights(bad).status().message()),
              HasSubstr("do not hold its shape"));
  in["b"] = torch::ones({2}, torch::kBool);
  EXPECT_EQ(EncodeWeights(in, 2, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nbrl::model
