// The actor's connection to its learner rank: registration and heartbeats, the
// trajectory stream with at-least-once delivery, and the weight subscription.
//
// Trajectory groups are queued with Send and written in order on one
// PushTrajectories stream; each stays in the client until the learner acknowledges
// it. When the stream breaks (the learner restarted, the network hiccuped), the
// client reconnects with exponential backoff, registers again if the learner forgot
// it, and re-sends every unacknowledged group; the learner counts a re-sent group
// once (it is idempotent by group id). Send blocks while `max_unacked` groups are in
// flight: that is the actor's back-pressure.
//
// FollowWeights runs a subscription that reassembles each weight version (checking
// checksums) and hands it to a callback; after a failure it resubscribes from the
// version it holds.
//
// Every call carries options.auth's token (and uses its TLS material). A learner
// that refuses the credentials (UNAUTHENTICATED) fails Start at once.
//
// Thread-safe. Close() (or the destructor) stops and joins every thread.
#ifndef NBRL_ACTOR_LEARNER_CLIENT_H_
#define NBRL_ACTOR_LEARNER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_auth.h"
#include "common/weight_stream.h"
#include "nbrl/v1/learner.grpc.pb.h"

namespace prometheus {
class Registry;
}

namespace nbrl::actor {

struct LearnerClientOptions {
  // host:port of the learner rank.
  std::string address;
  // Stable across restarts of this actor slot, e.g. "node0/actor3".
  std::string actor_id;
  std::string hostname;
  uint32_t group_size = 0;
  // Groups sent but not yet acknowledged, at most; Send blocks beyond.
  size_t max_unacked = 16;
  // Reconnection backoff: doubles from initial to max.
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(5);
  // Deadline of unary calls (register, heartbeat).
  absl::Duration rpc_timeout = absl::Seconds(10);
  // Largest message accepted (weight chunks) and sent (groups).
  int max_message_bytes = 64 << 20;
  // TLS material and token presented to the learner (default: none).
  common::ClientAuth auth;
};

struct LearnerClientStats {
  uint64_t sent = 0;          // groups written (including re-sends)
  uint64_t acknowledged = 0;  // acks received
  uint64_t resent = 0;        // groups written again after a reconnect
  uint64_t reconnects = 0;    // trajectory streams re-opened after a failure
  uint64_t weight_versions = 0;
  std::map<std::string, uint64_t> results;  // ack result name -> count
};

class LearnerClient {
 public:
  // Connects lazily; nothing is sent until Start. `registry` may be null.
  static absl::StatusOr<std::unique_ptr<LearnerClient>> Create(
      LearnerClientOptions options, prometheus::Registry* registry);
  ~LearnerClient();

  // Registers (retrying with backoff until `deadline`), then starts the
  // trajectory stream and the heartbeats. Unavailable / DeadlineExceeded when the
  // learner cannot be reached in time.
  absl::Status Start(uint64_t policy_version, absl::Time deadline);

  // Queues a group; blocks while max_unacked are in flight, up to `deadline`
  // (DeadlineExceeded). Cancelled after Close, or when the learner ended the run
  // while the queue is full.
  absl::Status Send(v1::TrajectoryGroup group, absl::Time deadline);
  // Waits until every queued group is acknowledged. DeadlineExceeded otherwise.
  absl::Status Flush(absl::Time deadline);

  // Follows the weight stream from `have_version`, calling `on_version` (on the
  // subscription thread) with each complete version. Call once.
  void FollowWeights(
      uint64_t have_version,
      std::function<void(std::shared_ptr<common::WeightVersion>)> on_version);

  // The version the actor runs, reported in heartbeats.
  void set_policy_version(uint64_t v) { policy_version_ = v; }
  // The newest version the learner announced (heartbeats, acks).
  uint64_t learner_version() const { return learner_version_; }
  // The learner asked the run to end (in a heartbeat or registration reply).
  bool shutdown_requested() const { return shutdown_requested_; }
  const std::string& run_id() const { return run_id_; }
  // Where the learner says this actor slot's data continues (from the first
  // registration); nullopt: from the start.
  std::optional<uint64_t> data_cursor() const {
    absl::MutexLock lock(&mu_);
    return data_cursor_;
  }

  LearnerClientStats stats() const;
  // Stops every thread; unacknowledged groups are dropped with a warning that
  // counts them (Flush first to avoid that).
  void Close();

 private:
  explicit LearnerClient(LearnerClientOptions options);
  absl::Status RegisterOnce();
  absl::Status RegisterWithRetry(absl::Time deadline);
  void StreamLoop();
  void HeartbeatLoop();
  void WeightLoop(
      uint64_t have_version,
      std::function<void(std::shared_ptr<common::WeightVersion>)> on_version);
  // Sleeps for the backoff, unless closing. Returns false when closing.
  bool Backoff(absl::Duration* delay);

  const LearnerClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LearnerService::Stub> stub_;
  std::atomic<uint64_t> policy_version_{0};
  std::atomic<uint64_t> learner_version_{0};
  std::atomic<bool> shutdown_requested_{false};
  std::string run_id_;
  absl::Duration heartbeat_interval_ = absl::Seconds(5);

  mutable absl::Mutex mu_;
  std::deque<v1::TrajectoryGroup> unacked_ ABSL_GUARDED_BY(mu_);
  std::optional<uint64_t> data_cursor_ ABSL_GUARDED_BY(mu_);
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  size_t written_ ABSL_GUARDED_BY(mu_) = 0;  // unacked_[0, written_) are on the stream
  size_t to_resend_ ABSL_GUARDED_BY(mu_) = 0;  // written on a stream that broke
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  LearnerClientStats stats_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* stream_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  grpc::ClientContext* weight_context_ ABSL_GUARDED_BY(mu_) = nullptr;

  std::thread stream_thread_;
  std::thread heartbeat_thread_;
  std::thread weight_thread_;
};

}  // namespace nbrl::actor

#endif  // NBRL_ACTOR_LEARNER_CLIENT_H_
