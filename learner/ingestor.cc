#include "learner/ingestor.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "common/status_macros.h"
#include "common/wire_names.h"
#include "glog/logging.h"

namespace nbrl::learner {

struct Ingestor::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : groups(common::CounterFamily(
            r, "nbrl_learner_groups_total",
            "Trajectory groups received, by what became of them.")),
        expired(common::CounterFamily(
                    r, "nbrl_learner_groups_expired_total",
                    "Accepted groups dropped before training: they waited in the "
                    "queue until they were more than max_staleness policy versions "
                    "behind.")
                    .Add({})),
        queue_depth(common::GaugeFamily(r, "nbrl_learner_queue_depth_groups",
                                        "Accepted groups waiting for training.")
                        .Add({})),
        staleness(
            common::HistogramFamily(
                r, "nbrl_learner_group_staleness_versions",
                "Policy versions between a group's oldest action and the learner.")
                .Add({}, prometheus::Histogram::BucketBoundaries{0, 1, 2, 3, 4, 6, 8,
                                                                 12, 16, 32})),
        journal_wait(common::HistogramFamily(
                         r, "nbrl_learner_journal_wait_seconds",
                         "Time an accepted group's acknowledgement waited for its "
                         "journal record to be on disk (fdatasync, shared by the "
                         "groups that wait together).")
                         .Add({}, common::LatencyBucketsSeconds())),
        journal_failures(
            common::CounterFamily(r, "nbrl_learner_journal_failures_total",
                                  "Failed journal writes or syncs. The first one stops "
                                  "the learner (it resumes from its last checkpoint).")
                .Add({})) {
    // Every result at 0 from the start, so dashboards show 0 rather than "no data".
    for (v1::GroupAck::Result result :
         {v1::GroupAck::RESULT_ACCEPTED, v1::GroupAck::RESULT_DUPLICATE,
          v1::GroupAck::RESULT_STALE, v1::GroupAck::RESULT_FILTERED,
          v1::GroupAck::RESULT_INVALID}) {
      groups.Add({{"result", common::AckResultName(result)}});
    }
  }
  prometheus::Family<prometheus::Counter>& groups;
  prometheus::Counter& expired;
  prometheus::Gauge& queue_depth;
  prometheus::Histogram& staleness;
  prometheus::Histogram& journal_wait;
  prometheus::Counter& journal_failures;
};

namespace {

bool UniformRewards(const v1::TrajectoryGroup& g) {
  for (const v1::Trajectory& t : g.trajectories()) {
    if (std::fabs(t.total_reward() - g.trajectories(0).total_reward()) > 1e-9)
      return false;
  }
  return g.trajectories_size() > 1;
}

}  // namespace

Ingestor::Ingestor(IngestorOptions options, prometheus::Registry* registry)
    : options_(std::move(options)) {
  if (registry) metrics_ = std::make_shared<Metrics>(*registry);
}

void Ingestor::Count(v1::GroupAck::Result result) {
  switch (result) {
    case v1::GroupAck::RESULT_ACCEPTED:
      stats_.accepted++;
      break;
    case v1::GroupAck::RESULT_DUPLICATE:
      stats_.duplicate++;
      break;
    case v1::GroupAck::RESULT_STALE:
      stats_.stale++;
      break;
    case v1::GroupAck::RESULT_FILTERED:
      stats_.filtered++;
      break;
    default:
      stats_.invalid++;
  }
  if (metrics_)
    metrics_->groups.Add({{"result", common::AckResultName(result)}}).Increment();
}

bool Ingestor::KeepUniform(const std::string& group_id) const {
  if (options_.uniform_group_keep >= 1) return true;
  // Deterministic per group id, so a re-sent group gets the same decision.
  uint64_t h =
      std::hash<std::string>()(group_id) ^ (options_.seed * 0x9E3779B97F4A7C15ULL);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return static_cast<double>(h % 1000000) / 1e6 < options_.uniform_group_keep;
}

absl::StatusOr<v1::GroupAck> Ingestor::Offer(v1::TrajectoryGroup group,
                                             uint64_t current_version,
                                             absl::Time deadline) {
  ASSIGN_OR_RETURN(PendingAck pending,
                   Decide(std::move(group), current_version, deadline));
  return Settle(std::move(pending));
}

absl::StatusOr<v1::GroupAck> Ingestor::Settle(PendingAck pending) {
  // An accepted group is acknowledged once its record is on disk (a duplicate once
  // its first copy's is). The sync runs outside the lock: other streams' groups and
  // the trainer's Take go on, and concurrent acknowledgements share one fdatasync.
  if (pending.journal != nullptr) {
    const absl::Time start = absl::Now();
    absl::Status st = pending.journal->SyncThrough(pending.record);
    if (metrics_)
      metrics_->journal_wait.Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (!st.ok()) {
      // The group is queued but maybe not on disk, and so may be any group
      // acknowledged after it: stop taking groups (the learner stops, and resumes
      // from its last checkpoint and journal). The actor re-sends this one.
      absl::Status failure = absl::UnavailableError(
          absl::StrCat("the learner cannot journal the group: ", st.message()));
      Fail(failure);
      return failure;
    }
  }
  return std::move(pending.ack);
}

void Ingestor::Fail(const absl::Status& failure) {
  absl::MutexLock lock(&mu_);
  FailLocked(failure);
}

void Ingestor::FailLocked(const absl::Status& failure) {
  if (!failure_.ok()) return;
  LOG(ERROR) << "ingestor: " << failure << "; no more groups are accepted";
  failure_ = failure;
  closed_ = true;
  if (metrics_) metrics_->journal_failures.Increment();
}

absl::Status Ingestor::failure() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

absl::StatusOr<Ingestor::PendingAck> Ingestor::Decide(v1::TrajectoryGroup group,
                                                      uint64_t current_version,
                                                      absl::Time deadline) {
  PendingAck pending;
  v1::GroupAck& ack = pending.ack;
  ack.set_group_id(group.group_id());
  ack.set_current_policy_version(current_version);
  absl::Status valid = ValidateGroup(group, options_.limits);
  if (valid.ok()) valid = ValidateVersions(group, current_version);

  absl::MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;
  if (closed_) return absl::CancelledError("the learner is shutting down");
  if (!valid.ok()) {
    ack.set_result(v1::GroupAck::RESULT_INVALID);
    ack.set_message(std::string(valid.message()));
    Count(ack.result());
    return pending;
  }
  auto seen = decided_.find(group.group_id());
  if (seen != decided_.end()) {
    auto first = static_cast<v1::GroupAck::Result>(seen->second);
    ack.set_result(first == v1::GroupAck::RESULT_ACCEPTED
                       ? v1::GroupAck::RESULT_DUPLICATE
                       : first);
    ack.set_message("already received; counted once");
    Count(v1::GroupAck::RESULT_DUPLICATE);
    if (journal_ && first == v1::GroupAck::RESULT_ACCEPTED) {
      // The first copy may still be waiting for its sync (on another stream): the
      // actor forgets the group on this ack, so it waits for the same sync.
      pending.journal = journal_;
      pending.record = journal_->records();
    }
    return pending;
  }
  uint64_t oldest = OldestPolicyVersion(group);
  uint64_t staleness = current_version > oldest ? current_version - oldest : 0;
  if (metrics_) metrics_->staleness.Observe(static_cast<double>(staleness));
  if (staleness > options_.max_staleness) {
    ack.set_result(v1::GroupAck::RESULT_STALE);
    ack.set_message(absl::StrCat("policy version ", oldest, " is ", staleness,
                                 " versions behind ", current_version,
                                 " (max_staleness ", options_.max_staleness, ")"));
  } else if (UniformRewards(group) && !KeepUniform(group.group_id())) {
    ack.set_result(v1::GroupAck::RESULT_FILTERED);
    ack.set_message("all rollouts have the same reward");
  } else {
    // Reserve the id before waiting, so a concurrent re-send is a duplicate.
    decided_[group.group_id()] = v1::GroupAck::RESULT_ACCEPTED;
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || queue_.size() < options_.capacity;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&has_room), deadline) || closed_) {
      decided_.erase(group.group_id());
      if (!failure_.ok()) return failure_;
      if (closed_) return absl::CancelledError("the learner is shutting down");
      return absl::ResourceExhaustedError(
          absl::StrCat("the learner's ingestion queue stayed full (", options_.capacity,
                       " groups)"));
    }
    if (journal_) {
      absl::StatusOr<uint64_t> written = journal_->Write(group);
      if (!written.ok()) {
        // Not queued, but a partial record may be in the file: a record after it
        // would make the journal unreadable, so no more are written.
        decided_.erase(group.group_id());
        FailLocked(absl::UnavailableError(absl::StrCat(
            "the learner cannot journal the group: ", written.status().message())));
        return failure_;
      }
      pending.journal = journal_;
      pending.record = *written;
    }
    uint64_t& cursor = cursors_[group.actor_id()];
    cursor = std::max(cursor, group.data_cursor());
    queue_.push_back(std::move(group));
    ack.set_result(v1::GroupAck::RESULT_ACCEPTED);
    Count(ack.result());
    if (metrics_) metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
    return pending;
  }
  decided_[group.group_id()] = ack.result();
  Count(ack.result());
  return pending;
}

std::vector<v1::TrajectoryGroup> Ingestor::Take(
    size_t min, size_t max, absl::Time deadline,
    std::optional<uint64_t> current_version) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::TrajectoryGroup> out;
  while (true) {
    const size_t need = min > out.size() ? min - out.size() : 0;
    auto ready = [this, need]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || queue_.size() >= need;
    };
    const bool in_time = mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    bool dropped = false;
    while (!queue_.empty() && out.size() < max) {
      v1::TrajectoryGroup g = std::move(queue_.front());
      queue_.pop_front();
      const uint64_t oldest = OldestPolicyVersion(g);
      if (current_version && *current_version > oldest &&
          *current_version - oldest > options_.max_staleness) {
        LOG(INFO) << "ingestor: group " << g.group_id()
                  << " expired in the queue (policy " << oldest << ", now "
                  << *current_version << ", max_staleness " << options_.max_staleness
                  << ")";
        decided_[g.group_id()] = v1::GroupAck::RESULT_STALE;
        stats_.expired++;
        if (metrics_) metrics_->expired.Increment();
        dropped = true;
        continue;
      }
      out.push_back(std::move(g));
    }
    // Done unless expired groups left the batch short and there is time to wait.
    if (!dropped || out.size() >= min || closed_ || !in_time) break;
  }
  if (metrics_) metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
  return out;
}

void Ingestor::PutBack(std::vector<v1::TrajectoryGroup> groups) {
  absl::MutexLock lock(&mu_);
  for (auto it = groups.rbegin(); it != groups.rend(); ++it) {
    queue_.push_front(std::move(*it));
  }
  if (metrics_) metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
}

void Ingestor::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

IngestorStats Ingestor::stats() const {
  absl::MutexLock lock(&mu_);
  IngestorStats s = stats_;
  s.queued = queue_.size();
  return s;
}

std::map<std::string, int> Ingestor::Decisions() const {
  absl::MutexLock lock(&mu_);
  return decided_;
}

void Ingestor::RestoreDecisions(const std::map<std::string, int>& decisions) {
  absl::MutexLock lock(&mu_);
  decided_.insert(decisions.begin(), decisions.end());
}

void Ingestor::SetJournal(std::unique_ptr<GroupJournal> journal) {
  absl::MutexLock lock(&mu_);
  journal_ = std::move(journal);
}

absl::StatusOr<RankState> Ingestor::Checkpoint(std::unique_ptr<GroupJournal> next) {
  absl::MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;  // the journal cannot be trusted
  uint64_t last = 0;
  absl::Status written;
  for (const v1::TrajectoryGroup& g : queue_) {
    absl::StatusOr<uint64_t> record = next->Write(g);
    if (!record.ok()) {
      written = record.status();
      break;
    }
    last = *record;
  }
  if (written.ok()) written = next->SyncThrough(last);  // one sync for all of them
  if (!written.ok()) {  // the same disk as the journal's: stop as Offer would
    FailLocked(absl::UnavailableError(absl::StrCat(
        "the learner cannot journal its queued groups: ", written.message())));
    return failure_;
  }
  journal_ = std::move(next);
  RankState s;
  s.decisions = decided_;
  s.data_cursors = cursors_;
  return s;
}

absl::StatusOr<size_t> Ingestor::Restore(const RankState& state,
                                         std::vector<v1::TrajectoryGroup> replay) {
  absl::MutexLock lock(&mu_);
  decided_.insert(state.decisions.begin(), state.decisions.end());
  for (const auto& [actor, cursor] : state.data_cursors) {
    cursors_[actor] = std::max(cursors_[actor], cursor);
  }
  size_t queued = 0;
  uint64_t last = 0;
  std::set<std::string> seen;  // a group queued at a checkpoint is in two journals
  for (v1::TrajectoryGroup& g : replay) {
    if (!seen.insert(g.group_id()).second) continue;
    decided_[g.group_id()] = v1::GroupAck::RESULT_ACCEPTED;
    if (journal_) {
      ASSIGN_OR_RETURN(last, journal_->Write(g));
    }
    uint64_t& cursor = cursors_[g.actor_id()];
    cursor = std::max(cursor, g.data_cursor());
    queue_.push_back(std::move(g));
    ++queued;
  }
  if (journal_) RETURN_IF_ERROR(journal_->SyncThrough(last));  // one sync for all
  if (metrics_) metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
  return queued;
}

std::optional<uint64_t> Ingestor::DataCursor(const std::string& actor_id) const {
  absl::MutexLock lock(&mu_);
  auto it = cursors_.find(actor_id);
  if (it == cursors_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> Ingestor::ActorsWithCursors() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [id, cursor] : cursors_) ids.push_back(id);
  return ids;
}

}  // namespace nbrl::learner
