#include "learner/data_parallel.h"

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef NBRL_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace nbrl::learner {
namespace {

std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// Runs a collective and waits for it; c10d reports failures as exceptions.
template <typename Fn>
absl::Status Collective(const char* what, absl::Duration timeout, Fn fn) {
  try {
    c10::intrusive_ptr<c10d::Work> work = fn();
    if (!work->wait(Millis(timeout))) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, " did not finish in ", absl::FormatDuration(timeout)));
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(what, " failed: ", e.what()));
  }
}

}  // namespace

struct DataParallel::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

DataParallel::DataParallel(DataParallelOptions options)
    : options_(std::move(options)) {}
DataParallel::~DataParallel() = default;

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(
    const DataParallelOptions& options) {
  if (options.world_size < 1 || options.rank < 0 ||
      options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " of world size ", options.world_size,
                     ": need 0 <= rank < world_size"));
  }
  std::string backend = options.backend;
  if (backend == "auto") backend = options.cuda ? "nccl" : "gloo";
  if (backend != "gloo" && backend != "nccl") {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend '", options.backend, "' is not one of: auto, gloo, nccl"));
  }
#ifndef NBRL_WITH_CUDA
  if (backend == "nccl") {
    return absl::InvalidArgumentError(
        "the NCCL backend needs a CUDA build of nbrl (NBRL_WITH_CUDA); use gloo");
  }
#endif
  std::unique_ptr<DataParallel> dp(new DataParallel(options));
  if (options.world_size == 1) return dp;
  dp->group_ = std::make_unique<Group>();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(options.store_port);
    so.isServer = options.rank == 0;
    so.numWorkers = static_cast<size_t>(options.world_size);
    so.waitWorkers = true;
    so.timeout = Millis(options.timeout);
    dp->group_->store = c10::make_intrusive<c10d::TCPStore>(options.store_host, so);
    if (backend == "gloo") {
      auto gloo = c10d::ProcessGroupGloo::Options::create();
      gloo->timeout = Millis(options.timeout);
      gloo->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      if (options.store_host != "127.0.0.1" && options.store_host != "localhost") {
        gloo->devices.back() = c10d::ProcessGroupGloo::createDefaultDevice();
      }
      dp->group_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(
          dp->group_->store, options.rank, options.world_size, gloo);
    }
#ifdef NBRL_WITH_CUDA
    else {
      auto nccl = c10d::ProcessGroupNCCL::Options::create();
      nccl->timeout = Millis(options.timeout);
      dp->group_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          dp->group_->store, options.rank, options.world_size, nccl);
    }
#endif
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("rank ", options.rank, " could not join the process group via ",
                     options.store_host, ":", options.store_port, ": ", e.what()));
  }
  dp->backend_ = backend;
  LOG(INFO) << "data parallel: rank " << options.rank << " of " << options.world_size
            << " over " << backend;
  return dp;
}

absl::Status DataParallel::AllReduceSum(const std::vector<torch::Tensor>& tensors) {
  if (options_.world_size == 1 || tensors.empty()) return absl::OkStatus();
  std::vector<torch::Tensor> flat_parts;
  for (const auto& t : tensors) flat_parts.push_back(t.reshape({-1}));
  std::vector<torch::Tensor> flat = {torch::cat(flat_parts)};
  absl::Status st = Collective("all-reduce", options_.timeout,
                               [&] { return group_->pg->allreduce(flat); });
  if (!st.ok()) return st;
  int64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = t.numel();
    t.copy_(flat[0].narrow(0, offset, n).view_as(t));
    offset += n;
  }
  return absl::OkStatus();
}

absl::Status DataParallel::Broadcast(const std::vector<torch::Tensor>& tensors,
                                     int root) {
  if (options_.world_size == 1 || tensors.empty()) return absl::OkStatus();
  for (const auto& t : tensors) {
    std::vector<torch::Tensor> one = {t};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    absl::Status st = Collective("broadcast", options_.timeout,
                                 [&] { return group_->pg->broadcast(one, bo); });
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace nbrl::learner
