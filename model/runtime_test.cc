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

// Both pools follow SetCpuThreads; OpenBLAS's only where libtorch runs on it
// (Debian's libtorch does: libopenblas0-pthread).
TEST(RuntimeTest, SetCpuThreadsSetsLibtorchAndOpenBlas) {
  const RuntimeInfo before = GetRuntimeInfo();
  ASSERT_TRUE(SetCpuThreads(1).ok());
  RuntimeInfo info = GetRuntimeInfo();
  EXPECT_EQ(info.intra_op_threads, 1);
  if (before.blas_threads > 0) {
    EXPECT_EQ(info.blas_threads, 1);
    EXPECT_THAT(DescribeRuntime(info), HasSubstr("OpenBLAS threads 1"));
  }
  ASSERT_TRUE(SetCpuThreads(3).ok());
  info = GetRuntimeInfo();
  EXPECT_EQ(info.intra_op_threads, 3);
  if (before.blas_threads > 0) {
    EXPECT_EQ(info.blas_threads, 3);
  }
  // Products still compute right on the resized pools.
  torch::Tensor a = torch::randn({64, 48}), b = torch::randn({48, 32});
  EXPECT_TRUE(torch::allclose(torch::mm(a, b), (a.unsqueeze(2) * b.unsqueeze(0)).sum(1),
                              1e-4, 1e-4));
  absl::Status bad = SetCpuThreads(0);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("at least 1"));
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
