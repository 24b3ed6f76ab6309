#include "model/safetensors.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_test_util.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A safetensors file built byte by byte: header length, header JSON, data.
std::string HandMadeFile(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string FloatBytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
  return out;
}

TEST(SafetensorsTest, ReadsAHandMadeFile) {
  const std::string dir = testing::TempDir("st_handmade");
  // bf16 1.0 = 0x3f80, -2.0 = 0xc000 (little-endian).
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}})";
  WriteBytes(dir + "/x.safetensors",
             HandMadeFile(header, FloatBytes({1, 2, 3, 4}) +
                                      std::string("\x80\x3f\x00\xc0", 4)));
  auto t = ReadSafetensorsFile(dir + "/x.safetensors");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_TRUE(t->at("a").equal(torch::tensor({{1.f, 2.f}, {3.f, 4.f}})));
  EXPECT_EQ(t->at("b").scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(t->at("b").to(torch::kFloat32).equal(torch::tensor({1.f, -2.f})));
}

TEST(SafetensorsTest, RoundTripsEveryDtype) {
  const std::string dir = testing::TempDir("st_roundtrip");
  TensorMap tensors = {
      {"f32", torch::randn({3, 5})},
      {"f16", torch::randn({7}).to(torch::kFloat16)},
      {"bf16", torch::randn({2, 3, 4}).to(torch::kBFloat16)},
      {"scalar", torch::tensor(2.5f).reshape({})},
      {"empty", torch::zeros({0, 4})},
  };
  ASSERT_TRUE(WriteSafetensorsFile(dir + "/t.safetensors", tensors).ok());
  // The data starts 8-byte aligned, as the reference writer does it.
  const std::string bytes = ReadBytes(dir + "/t.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  auto back = ReadSafetensorsFile(dir + "/t.safetensors");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(back->at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(back->at(name).equal(t)) << name;
  }
}

TEST(SafetensorsTest, ShardedDirectoryRoundTrips) {
  const std::string dir = testing::TempDir("st_sharded");
  TensorMap tensors;
  for (int i = 0; i < 5; ++i) tensors["w" + std::to_string(i)] = torch::randn({16, 16});
  ASSERT_TRUE(WriteSafetensorsDir(dir, tensors, {/*max_shard_bytes=*/2048}).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/model-00001-of-00003.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors"));
  auto back = ReadSafetensorsDir(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), tensors.size());
  for (const auto& [name, t] : tensors) EXPECT_TRUE(back->at(name).equal(t)) << name;
}

class SafetensorsErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("st_errors");
    path_ = dir_ + "/model.safetensors";
    ASSERT_TRUE(WriteSafetensorsFile(path_, {{"w", torch::randn({4, 4})}}).ok());
    good_ = ReadBytes(path_);
  }
  absl::Status ReadBack(const std::string& bytes) {
    WriteBytes(path_, bytes);
    return ReadSafetensorsFile(path_).status();
  }
  std::string dir_, path_, good_;
};

TEST_F(SafetensorsErrorTest, TruncatedDataIsDataLoss) {
  absl::Status s = ReadBack(good_.substr(0, good_.size() - 10));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(path_));
  EXPECT_THAT(s.message(), HasSubstr("tensor 'w'"));
  EXPECT_THAT(s.message(), HasSubstr("out of bounds"));
}

TEST_F(SafetensorsErrorTest, TruncatedHeaderIsDataLoss) {
  absl::Status s = ReadBack(good_.substr(0, 20));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("exceeds the file"));
  EXPECT_EQ(ReadBack(good_.substr(0, 5)).code(), absl::StatusCode::kDataLoss);
}

TEST_F(SafetensorsErrorTest, HugeHeaderLengthIsDataLoss) {
  std::string bytes = good_;
  bytes[7] = '\x7f';
  absl::Status s = ReadBack(bytes);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("header length"));
}

TEST_F(SafetensorsErrorTest, CorruptHeaderJsonIsDataLoss) {
  std::string bytes = good_;
  bytes[8] = '[';
  bytes[9] = '{';
  absl::Status s = ReadBack(bytes);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("not a JSON object"));
}

TEST_F(SafetensorsErrorTest, OffsetsNotMatchingShapeAreDataLoss) {
  absl::Status s =
      ReadBack(HandMadeFile(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                            FloatBytes({1, 2, 3})));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("its shape and dtype need 12"));
}

TEST_F(SafetensorsErrorTest, OffsetsOutOfBoundsAreDataLoss) {
  absl::Status s = ReadBack(
      HandMadeFile(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}})",
                   FloatBytes({1, 2, 3})));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("out of bounds"));
}

TEST_F(SafetensorsErrorTest, MissingFieldsAreDataLoss) {
  absl::Status s =
      ReadBack(HandMadeFile(R"({"w":{"dtype":"F32","shape":[1]}})", FloatBytes({1})));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("data_offsets"));
}

TEST_F(SafetensorsErrorTest, UnsupportedDtypeIsInvalidArgument) {
  absl::Status s =
      ReadBack(HandMadeFile(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
                            std::string(8, '\0')));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("F64 is not supported"));
}

TEST(SafetensorsDirTest, EmptyDirectoryIsNotFound) {
  auto t = ReadSafetensorsDir(testing::TempDir("st_empty"));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("model.safetensors"));
}

TEST(SafetensorsDirTest, IndexNamingATensorItsShardLacksIsDataLoss) {
  const std::string dir = testing::TempDir("st_bad_index");
  ASSERT_TRUE(
      WriteSafetensorsFile(dir + "/a.safetensors", {{"x", torch::ones({2})}}).ok());
  WriteBytes(dir + "/model.safetensors.index.json",
             R"({"weight_map": {"x": "a.safetensors", "y": "a.safetensors"}})");
  auto t = ReadSafetensorsDir(dir);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(t.status().message(), HasSubstr("'y'"));
}

TEST(SafetensorsDirTest, IndexNamingAMissingShardIsNotFound) {
  const std::string dir = testing::TempDir("st_missing_shard");
  WriteBytes(dir + "/model.safetensors.index.json",
             R"({"weight_map": {"x": "model-00001-of-00002.safetensors"}})");
  auto t = ReadSafetensorsDir(dir);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("model-00001-of-00002.safetensors"));
}

TEST(SafetensorsDirTest, UnsavableDtypeIsInvalidArgument) {
  const std::string dir = testing::TempDir("st_bad_dtype");
  absl::Status s = WriteSafetensorsFile(dir + "/x.safetensors",
                                        {{"i", torch::ones({2}, torch::kInt32)}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'i'"));
}

}  // namespace
}  // namespace nbrl::model
