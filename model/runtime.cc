#include "model/runtime.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nbrl::model {
namespace {

// OpenBLAS's thread controls, looked up in the process (libtorch's BLAS may be
// another library: then they are null).
using GetThreadsFn = int (*)();
using SetThreadsFn = void (*)(int);
GetThreadsFn OpenBlasGetThreads() {
  return reinterpret_cast<GetThreadsFn>(
      dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
}
SetThreadsFn OpenBlasSetThreads() {
  return reinterpret_cast<SetThreadsFn>(
      dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}

}  // namespace

RuntimeInfo GetRuntimeInfo() {
  RuntimeInfo info;
  info.torch_version = absl::StrCat(TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ".",
                                    TORCH_VERSION_PATCH);
#ifdef NBRL_WITH_CUDA
  info.built_with_cuda = true;
#endif
  info.cuda_available = torch::cuda::is_available();
  info.cuda_device_count =
      info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
  info.intra_op_threads = at::get_num_threads();
  if (GetThreadsFn get = OpenBlasGetThreads()) info.blas_threads = get();
  return info;
}

absl::Status SetCpuThreads(int threads) {
  if (threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPU threads must be at least 1 (got ", threads, ")"));
  }
  at::set_num_threads(threads);
  if (SetThreadsFn set = OpenBlasSetThreads()) set(threads);
  return absl::OkStatus();
}

std::string DescribeRuntime(const RuntimeInfo& info) {
  return absl::StrCat(
      "libtorch ", info.torch_version, ", CUDA build ",
      info.built_with_cuda ? "yes" : "no", ", CUDA devices ", info.cuda_device_count,
      ", intra-op threads ", info.intra_op_threads,
      info.blas_threads > 0 ? absl::StrCat(", OpenBLAS threads ", info.blas_threads)
                            : std::string(),
      ", collectives ",
      info.built_with_cuda ? "NCCL (GPU) + Gloo (CPU)" : "Gloo (CPU)");
}

absl::StatusOr<c10::Device> SelectDevice(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name == "auto") {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0)
                                       : c10::Device(c10::kCPU);
  }
  int index = 0;
  if (name == "cuda") {
    index = 0;
  } else if (absl::StartsWith(name, "cuda:")) {
    if (!absl::SimpleAtoi(name.substr(5), &index) || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("device '", name, "': expected cuda:N with N >= 0"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("device '", name, "' is not one of: auto, cpu, cuda, cuda:N"));
  }
  int count =
      torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  if (index >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("device '", name, "' is not available: this process sees ", count,
                     " CUDA device(s)",
                     count == 0 ? " (CPU-only libtorch or no GPU); use cpu" : ""));
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace nbrl::model
