// Data parallelism across learner ranks over a c10d process group: Gloo on CPU,
// NCCL on CUDA (when built with NBRL_WITH_CUDA). Ranks rendezvous through a c10d
// TCPStore served by rank 0. With one rank everything is a local no-op.
//
// Thread safety: collectives must be called in the same order on every rank, from
// one thread per rank.
#ifndef NBRL_LEARNER_DATA_PARALLEL_H_
#define NBRL_LEARNER_DATA_PARALLEL_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbrl::learner {

struct DataParallelOptions {
  int rank = 0;
  int world_size = 1;
  // Address of rank 0's store.
  std::string store_host = "127.0.0.1";
  int store_port = 29500;
  // How long rendezvous and each collective may take.
  absl::Duration timeout = absl::Minutes(5);
  // "auto" (NCCL for CUDA tensors when built with CUDA, else Gloo), "gloo", "nccl".
  std::string backend = "auto";
  // Device of the tensors reduced (for choosing the backend).
  bool cuda = false;
};

class DataParallel {
 public:
  // Rendezvous. InvalidArgument for a bad rank / world size / backend;
  // DeadlineExceeded or Unavailable when the ranks do not meet in time.
  static absl::StatusOr<std::unique_ptr<DataParallel>> Create(
      const DataParallelOptions& options);
  ~DataParallel();

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  const std::string& backend() const { return backend_; }

  // Sums each tensor over the ranks, in place (one fused collective).
  absl::Status AllReduceSum(const std::vector<torch::Tensor>& tensors);
  // Copies rank `root`'s tensors to every rank, in place.
  absl::Status Broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);

 private:
  explicit DataParallel(DataParallelOptions options);
  struct Group;  // the c10d store and process group (data_parallel.cc)

  DataParallelOptions options_;
  std::string backend_ = "none";
  std::unique_ptr<Group> group_;
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_DATA_PARALLEL_H_
