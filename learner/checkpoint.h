// Learner checkpoints: everything a killed or stopped run needs to continue at the
// same step with the same optimizer state.
//
//   <root>/step-00000042/
//     config.json, model.safetensors, tokenizer*.json   the policy, a Hugging Face
//                                                        folder (nbrl eval, actors
//                                                        and transformers load it)
//     optimizer.pt      AdamW moments and step counts, and the torch CPU RNG state
//     rank-<r>.json     per rank: ingestion decisions and actors' data cursors
//     run_config.yaml   the resolved configuration of the run
//     manifest.json     step, version, world size, and every file's size and CRC-32C;
//                       written last
//   <root>/journal/rank-<r>/from-step-00000042.log
//                       accepted groups since that checkpoint (GroupJournal)
//   <root>/published-version
//                       the newest weight version published
//   <root>/LOCK-rank-<r>
//                       held (flock) by the running learner of rank r
//
// A checkpoint is assembled in step-N.tmp and renamed into place once complete, so
// a crash mid-write leaves the previous checkpoint untouched; FindLatestCheckpoint
// verifies every file against the manifest and skips (and names) any checkpoint
// that fails. The newest `keep` checkpoints are kept.
#ifndef NBRL_LEARNER_CHECKPOINT_H_
#define NBRL_LEARNER_CHECKPOINT_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "learner/ingestor.h"
#include "model/transformer.h"

namespace nbrl::learner {

struct CheckpointInfo {
  std::string dir;
  int64_t step = 0;
  uint64_t version = 0;
  int world_size = 1;
};

std::string CheckpointDir(const std::string& root, int64_t step);
std::string JournalPath(const std::string& root, int rank, int64_t step);

// Writing, in order: every rank calls WriteRankState; rank 0 calls WriteModelState;
// once every rank is done (a barrier), rank 0 calls CommitCheckpoint.
absl::Status WriteRankState(const std::string& root, int64_t step, int rank,
                            const RankState& state);
// `tokenizer_dir`: the folder whose tokenizer files are copied along (may be "").
absl::Status WriteModelState(const std::string& root, int64_t step,
                             const model::Transformer& policy,
                             torch::optim::Optimizer& optimizer,
                             const std::string& tokenizer_dir,
                             const std::string& run_config_yaml);
// Writes the manifest and renames step-N.tmp to step-N. Then sets aside checkpoints
// past step N (an abandoned future) as abandoned-step-*, removes unfinished
// step-*.tmp folders, and removes all but the newest `keep` checkpoints and the
// journals no kept checkpoint needs.
absl::Status CommitCheckpoint(const std::string& root, int64_t step, uint64_t version,
                              int world_size, int keep);

// The newest checkpoint under `root` whose files all match its manifest; NotFound
// when there is none. `skipped` (may be null) receives a line for each checkpoint
// passed over and why.
absl::StatusOr<CheckpointInfo> FindLatestCheckpoint(const std::string& root,
                                                    std::vector<std::string>* skipped);
// Reads and verifies one checkpoint folder.
absl::StatusOr<CheckpointInfo> VerifyCheckpoint(const std::string& dir);

absl::StatusOr<RankState> ReadRankState(const CheckpointInfo& checkpoint, int rank);
// Loads the optimizer state and the RNG state. FailedPrecondition when the
// optimizer's parameters do not match the checkpoint's.
absl::Status LoadOptimizerState(const CheckpointInfo& checkpoint,
                                torch::optim::Optimizer& optimizer);

// The journals of `rank` from `step` on, oldest first.
std::vector<std::string> JournalsFrom(const std::string& root, int rank, int64_t step);

// Holds <root>/LOCK (flock) for the life of the process, so two learners of the same
// rank never share a checkpoint folder. FailedPrecondition naming the holder's pid
// when another process has it.
class CheckpointLock {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointLock>> Acquire(
      const std::string& root, int rank);
  ~CheckpointLock();

 private:
  explicit CheckpointLock(int fd) : fd_(fd) {}
  int fd_;
};

// <root>/published-version: read (0 when absent) and write (atomically).
uint64_t ReadPublishedVersion(const std::string& root);
absl::Status WritePublishedVersion(const std::string& root, uint64_t version);

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_CHECKPOINT_H_
