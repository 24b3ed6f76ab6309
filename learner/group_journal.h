// An append-only, checksummed log of accepted trajectory groups: the learner's
// write-ahead record of everything it has acknowledged but not yet checkpointed.
//
// An actor forgets a group once the learner acknowledges it as accepted, so the
// learner writes the group here first. A checkpoint at step N starts a new journal
// holding the groups still queued; resuming from that checkpoint replays it, so a
// learner killed between checkpoints loses no acknowledged group and trains each
// one into the resumed model exactly once.
//
// Record layout (little-endian): u32 payload length, u32 CRC-32C of the payload,
// payload (a serialized TrajectoryGroup). A crash can leave a torn last record;
// Read stops there and says so. A bad record before the end is DataLoss.
//
// Not thread-safe (the ingestor appends under its lock).
#ifndef NBRL_LEARNER_GROUP_JOURNAL_H_
#define NBRL_LEARNER_GROUP_JOURNAL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nbrl/v1/learner.pb.h"

namespace nbrl::learner {

class GroupJournal {
 public:
  // Creates (truncating) `path`, and its directory. `sync`: fdatasync after each
  // record, so an acknowledged group survives a machine crash, not only a process
  // crash.
  static absl::StatusOr<std::unique_ptr<GroupJournal>> Create(const std::string& path,
                                                              bool sync);
  ~GroupJournal();
  GroupJournal(const GroupJournal&) = delete;
  GroupJournal& operator=(const GroupJournal&) = delete;

  absl::Status Append(const v1::TrajectoryGroup& group);
  // Syncs, then renames the file to `path` (atomically replacing one there).
  absl::Status Rename(const std::string& path);
  const std::string& path() const { return path_; }
  uint64_t records() const { return records_; }
  uint64_t bytes() const { return bytes_; }

  struct Contents {
    std::vector<v1::TrajectoryGroup> groups;
    // A torn record at the end (a crash mid-append) was ignored.
    bool torn_tail = false;
  };
  // Every whole record of `path`. NotFound when missing; DataLoss naming the
  // offset for a corrupt record that is not the last.
  static absl::StatusOr<Contents> Read(const std::string& path);

 private:
  GroupJournal(std::string path, int fd, bool sync)
      : path_(std::move(path)), fd_(fd), sync_(sync) {}
  std::string path_;
  int fd_ = -1;
  bool sync_ = true;
  uint64_t records_ = 0, bytes_ = 0;
  std::string buffer_;
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_GROUP_JOURNAL_H_
