// The learner's ingestion stage: decides the fate of each incoming trajectory group
// and queues the accepted ones for training.
//
//   - invalid (ValidateGroup, ValidateVersions)       -> RESULT_INVALID (counted,
//                                                        never queued or recorded)
//   - already decided (a re-send after a reconnect)   -> the first decision, again
//                                                        (an accepted group is
//                                                        RESULT_DUPLICATE: counted
//                                                        once)
//   - older than `max_staleness` policy versions      -> RESULT_STALE (dropped,
//   counted)
//   - all rollouts with the same total reward, thinned
//     by `uniform_group_keep`                         -> RESULT_FILTERED
//   - otherwise                                       -> RESULT_ACCEPTED, queued
//
// The queue is bounded: Offer waits while it is full (the caller stops reading its
// stream, and gRPC flow control slows the actor); nothing is dropped silently.
//
// Thread-safe.
#ifndef NBRL_LEARNER_INGESTOR_H_
#define NBRL_LEARNER_INGESTOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "learner/group_journal.h"
#include "learner/group_validator.h"
#include "nbrl/v1/learner.pb.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace nbrl::learner {

struct IngestorOptions {
  // Accepted groups waiting for training, at most.
  size_t capacity = 64;
  // Groups whose oldest action is more than this many versions behind the current
  // policy are dropped. Synchronous training uses 0.
  uint64_t max_staleness = 4;
  // Probability of keeping a group whose rollouts all have the same total reward
  // (all passed or all failed: no signal for group baselines). 1 keeps all.
  double uniform_group_keep = 1.0;
  GroupLimits limits;
  uint64_t seed = 1;
};

// One rank's ingestion state, as a checkpoint records it.
struct RankState {
  // group id -> GroupAck::Result, so re-sent groups are still recognised.
  std::map<std::string, int> decisions;
  // actor id -> examples its accepted groups had consumed (epoch * shard size +
  // position), where a restarted actor resumes its data.
  std::map<std::string, uint64_t> data_cursors;
};

struct IngestorStats {
  uint64_t accepted = 0, duplicate = 0, stale = 0, filtered = 0, invalid = 0;
  // Accepted groups that waited in the queue until they were more than
  // max_staleness versions behind, and were dropped instead of trained.
  uint64_t expired = 0;
  size_t queued = 0;
};

class Ingestor {
 public:
  // `registry` may be null; metrics are nbrl_learner_groups_total{result} and
  // friends.
  Ingestor(IngestorOptions options, prometheus::Registry* registry);

  // Decides and, when accepted, queues `group`, waiting until `deadline` while the
  // queue is full. ResourceExhausted when it stays full; Cancelled after Close.
  // With a journal, an accepted group returns once its record is on disk; that
  // wait is outside the lock (concurrent Offers share one sync). A journal that
  // fails to write or sync fails the ingestor (see Fail): Unavailable.
  absl::StatusOr<v1::GroupAck> Offer(v1::TrajectoryGroup group,
                                     uint64_t current_version, absl::Time deadline);

  // Offer in two halves, for a stream that reads its next group while the previous
  // one's record is synced: Decide decides (and queues and journals an accepted
  // group, unsynced); Settle waits for the record's sync and returns the ack. An
  // ack must not be sent before its Settle returns.
  struct PendingAck {
    v1::GroupAck ack;
    std::shared_ptr<GroupJournal> journal;  // null: nothing to wait for
    uint64_t record = 0;                    // journal records 1..record
  };
  absl::StatusOr<PendingAck> Decide(v1::TrajectoryGroup group, uint64_t current_version,
                                    absl::Time deadline);
  absl::StatusOr<v1::GroupAck> Settle(PendingAck pending);

  // Takes up to `max` queued groups once at least `min` are there (or the deadline
  // passes, or Close: then whatever is queued). Oldest first. With
  // `current_version`, groups now more than max_staleness versions behind it (they
  // were fresh when accepted, then waited) are dropped and counted as expired, and
  // the wait goes on for fresh ones: the bound holds for what is trained.
  std::vector<v1::TrajectoryGroup> Take(
      size_t min, size_t max, absl::Time deadline,
      std::optional<uint64_t> current_version = std::nullopt);

  // Returns taken groups to the front of the queue (a step that did not happen,
  // e.g. at shutdown), so the next checkpoint's journal keeps them.
  void PutBack(std::vector<v1::TrajectoryGroup> groups);

  // Wakes every waiter; later Offers are Cancelled. Queued groups can still be taken.
  void Close();
  // A journal write or sync failed (Offer calls it): the ingestor closes, and later
  // Offers return `failure`. The learner must stop without writing a checkpoint;
  // its last checkpoint and journal hold every acknowledged group. The first
  // failure is kept.
  void Fail(const absl::Status& failure);
  // OK, or the failure that closed the ingestor.
  absl::Status failure() const;

  IngestorStats stats() const;
  // The limits groups are validated against.
  const GroupLimits& limits() const { return options_.limits; }

  // Decisions so far, for checkpoints (group id -> GroupAck::Result), and restoring
  // them on resume so re-sent groups are still recognised.
  std::map<std::string, int> Decisions() const;
  void RestoreDecisions(const std::map<std::string, int>& decisions);

  // Write-ahead journal: every accepted group is appended (and synced) before it is
  // acknowledged. Without one, a killed learner loses what it had queued.
  void SetJournal(std::unique_ptr<GroupJournal> journal);
  // At a checkpoint: the state to record, and `next` becomes the journal, starting
  // with the groups still queued (they are not in the checkpoint's model). A
  // failure to write or sync `next` fails the ingestor, as in Offer.
  absl::StatusOr<RankState> Checkpoint(std::unique_ptr<GroupJournal> next);
  // On resume: restores `state`, then queues `replay` (the journaled groups the
  // checkpoint's model has not seen, oldest first; a repeated id is queued once)
  // and appends them to the journal. Returns how many were queued.
  absl::StatusOr<size_t> Restore(const RankState& state,
                                 std::vector<v1::TrajectoryGroup> replay);
  // Where `actor_id`'s data continues: the cursor of its newest accepted group.
  std::optional<uint64_t> DataCursor(const std::string& actor_id) const;
  // The actors that have a data cursor: those whose groups this run accepted.
  std::vector<std::string> ActorsWithCursors() const;

 private:
  struct Metrics;
  void Count(v1::GroupAck::Result result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailLocked(const absl::Status& failure) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool KeepUniform(const std::string& group_id) const;

  const IngestorOptions options_;
  std::shared_ptr<Metrics> metrics_;  // null without a registry

  mutable absl::Mutex mu_;
  std::deque<v1::TrajectoryGroup> queue_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> decided_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> cursors_ ABSL_GUARDED_BY(mu_);
  // Shared: an Offer syncs its record after it leaves the lock, also when a
  // checkpoint has replaced the journal meanwhile.
  std::shared_ptr<GroupJournal> journal_ ABSL_GUARDED_BY(mu_);
  IngestorStats stats_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_INGESTOR_H_
