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
// Write, Append and Rename are not thread-safe (the ingestor calls them under its
// lock). SyncThrough is, also alongside Write: an acknowledgement waits for its
// record's sync outside the ingestor's lock, and concurrent waiters share one
// fdatasync (group commit), so N actors' streams do not pay N syncs in a row and
// the trainer's Take never waits behind one.
#ifndef NBRL_LEARNER_GROUP_JOURNAL_H_
#define NBRL_LEARNER_GROUP_JOURNAL_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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

  // Write, then SyncThrough it.
  absl::Status Append(const v1::TrajectoryGroup& group);
  // Appends a record without syncing it; returns its number (1, 2, ...).
  absl::StatusOr<uint64_t> Write(const v1::TrajectoryGroup& group);
  // Returns once records 1..`record` are on disk (with sync; at once without):
  // one fdatasync covers every record written before it started. Thread-safe.
  // A failed fdatasync is final: Linux may drop the pages it could not write and
  // report success to the next call, so every later SyncThrough (and Rename)
  // returns the first failure instead of syncing again.
  absl::Status SyncThrough(uint64_t record);
  // Whether SyncThrough(record) would wait for an fdatasync (or fail): false
  // without sync, or once a sync has covered `record`. Thread-safe, lock-free.
  bool NeedsSync(uint64_t record) const {
    return sync_ && synced_through_.load(std::memory_order_acquire) < record;
  }
  // Syncs, then renames the file to `path` (atomically replacing one there).
  absl::Status Rename(const std::string& path);
  const std::string& path() const { return path_; }
  uint64_t records() const { return records_.load(); }
  uint64_t bytes() const { return bytes_; }
  // fdatasync calls so far (Rename's included).
  uint64_t syncs() const { return syncs_.load(); }

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
  // One fdatasync, counted; after a failure, that failure without a sync.
  absl::Status SyncLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  std::string path_;
  int fd_ = -1;
  bool sync_ = true;
  std::atomic<uint64_t> records_{0};  // written; read by SyncThrough
  uint64_t bytes_ = 0;
  std::atomic<uint64_t> syncs_{0};
  absl::Mutex sync_mu_;
  uint64_t synced_ ABSL_GUARDED_BY(sync_mu_) = 0;        // records known to be on disk
  std::atomic<uint64_t> synced_through_{0};              // synced_, for NeedsSync
  absl::Status sync_failure_ ABSL_GUARDED_BY(sync_mu_);  // the first failed sync
  std::string buffer_;
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_GROUP_JOURNAL_H_
