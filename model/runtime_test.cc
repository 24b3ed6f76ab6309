#include "model/runtime.h"

#include <torch/torch.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::model {
namespace {

using ::testing::HasSubstr;

TEST(RuntimeTest, ReportsTheLinkedLibtorch) {
  RuntimeInfo info = GetRuntimeInfo();
  EXPECT_EQ(info.torch_version, std::to_string(TORCH_VERSION_MAJOR) + "." +
                                    std::to_string(TORCH_VERSION_MINOR) + "." +
                                    std::to_string(TORCH_VERSION_PATCH));
  EXPECT_GE(info.intra_op_threads, 1);
  EXPECT_THAT(DescribeRuntime(info), HasSubstr("libtorch " + info.torch_version));
}

TEST(RuntimeTest, CpuIsAlwaysSelectable) {
  auto device = SelectDevice("cpu");
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_TRUE(device->is_cpu());
  auto a = SelectDevice("auto");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->is_cuda(), torch::cuda::is_available());
}

TEST(RuntimeTest, MalformedDeviceNamesAreRejected) {
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "", "CPU"}) {
    auto device = SelectDevice(bad);
    ASSERT_FALSE(device.ok()) << bad;
    EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(RuntimeTest, MissingCudaDeviceIsAClearError) {
  int count =
      torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  auto device = SelectDevice("cuda:" + std::to_string(count));
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(device.status().message()), HasSubstr("sees"));
}

}  // namespace
}  // namespace nbrl::model
