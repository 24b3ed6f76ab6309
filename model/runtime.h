// What the libtorch runtime of this process can do, and choosing where to run.
//
// Thread safety: all functions are thread-safe.
#ifndef NBRL_MODEL_RUNTIME_H_
#define NBRL_MODEL_RUNTIME_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace c10 {
struct Device;
}

namespace nbrl::model {

struct RuntimeInfo {
  std::string torch_version;     // e.g. "1.13.1"
  bool built_with_cuda = false;  // this nbrl build has the CUDA/NCCL paths
  bool cuda_available = false;   // a CUDA device can be used now
  int cuda_device_count = 0;
  int intra_op_threads = 0;
  int blas_threads = 0;  // OpenBLAS's own thread pool; 0 when libtorch does not
                         // run on OpenBLAS
};

RuntimeInfo GetRuntimeInfo();

// Sets the CPU threads of this process's tensor math to `threads` (>= 1): libtorch's
// intra-op pool and, when libtorch runs on OpenBLAS (Debian's build), OpenBLAS's own
// pool. OpenBLAS otherwise starts one thread per CPU and keeps them spinning on
// sched_yield between products, which on a machine shared by several model
// processes (actors beside a learner) costs the others a large share of the CPU.
// InvalidArgument for threads < 1.
absl::Status SetCpuThreads(int threads);

// One line for --version and start-up logs.
std::string DescribeRuntime(const RuntimeInfo& info);

// Parses a device name: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available,
// else CPU). InvalidArgument for a malformed name, FailedPrecondition for a CUDA
// device this process cannot use (naming how many there are).
absl::StatusOr<c10::Device> SelectDevice(const std::string& name);

}  // namespace nbrl::model

#endif  // NBRL_MODEL_RUNTIME_H_
