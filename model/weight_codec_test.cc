#include "model/weight_codec.h"

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
