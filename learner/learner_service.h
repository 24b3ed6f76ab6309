// The gRPC face of a learner rank (nbrl.v1.LearnerService): a thin adapter over the
// Ingestor (trajectory groups in), the WeightPublisher (weights out) and the actor
// registry. Every call is first authenticated (options.auth: the run's token and,
// under mutual TLS, a client certificate; UNAUTHENTICATED otherwise, before
// anything else happens, weights included), then validated: a malformed field is
// INVALID_ARGUMENT (ids: 1 to 256 bytes, no control characters), an unknown actor
// FAILED_PRECONDITION, a message over options.max_message_bytes RESOURCE_EXHAUSTED.
// A trajectory group that fails ValidateGroup is answered with a RESULT_INVALID
// ack on its stream (which stays open) and is counted, never queued.
//
// Uses gRPC's synchronous API for all but SubscribeWeights: each stream has a
// thread of gRPC's pool, so waiting on a full ingestion queue blocks only that
// actor's stream (back-pressure). SubscribeWeights is a callback reactor on raw
// bytes (see below) and holds no thread while it waits for a version.
//
// Thread-safe.
#ifndef NBRL_LEARNER_LEARNER_SERVICE_H_
#define NBRL_LEARNER_LEARNER_SERVICE_H_

#include <grpcpp/server_builder.h>

#include <atomic>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_auth.h"
#include "learner/ingestor.h"
#include "learner/weight_publisher.h"
#include "nbrl/v1/learner.grpc.pb.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Gauge;
}  // namespace prometheus

namespace nbrl::learner {

struct LearnerServiceOptions {
  std::string run_id = "run";
  uint32_t rank = 0;
  uint32_t world_size = 1;
  // What actors are told, and after how long without one an actor counts as gone.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  absl::Duration heartbeat_timeout = absl::Seconds(30);
  // How long one group may wait for room in a full ingestion queue before its
  // stream is failed with RESOURCE_EXHAUSTED (the actor then reconnects and
  // re-sends it).
  absl::Duration queue_wait = absl::Minutes(10);
  // Checks every call's credentials; not owned, must outlive the service. Null:
  // no checks (tests).
  const common::ServerAuth* auth = nullptr;
  // Largest message the server accepts (a trajectory group), in bytes; larger ones
  // fail their call with RESOURCE_EXHAUSTED before they are parsed. AddTo sets it.
  int max_message_bytes = 256 << 20;
};

// SubscribeWeights uses gRPC's callback API on raw bytes, so that each chunk's data
// goes out straight from the published version, shared by every subscriber,
// instead of being copied into a message and again into its encoding per
// subscriber; the other methods are synchronous.
class LearnerServiceImpl final
    : public v1::LearnerService::WithRawCallbackMethod_SubscribeWeights<
          v1::LearnerService::Service> {
 public:
  // Not owned; must outlive the service. With a registry the service exports
  // nbrl_learner_actor_heartbeat_timestamp_seconds{actor}.
  LearnerServiceImpl(LearnerServiceOptions options, Ingestor* ingestor,
                     WeightPublisher* publisher,
                     prometheus::Registry* registry = nullptr);

  // Registers the service with `builder` and sets the server's message size cap
  // (options.max_message_bytes). Use it rather than RegisterService.
  void AddTo(grpc::ServerBuilder* builder);

  grpc::Status RegisterActor(grpc::ServerContext* context,
                             const v1::RegisterActorRequest* request,
                             v1::RegisterActorResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status PushTrajectories(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::GroupAck, v1::TrajectoryGroup>* stream) override;
  // A serialized nbrl.v1.SubscribeWeightsRequest in, serialized WeightChunks out.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* SubscribeWeights(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::Status Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                      v1::StatusResponse* response) override;

  // Progress reported by Status, set by the trainer.
  void SetProgress(uint64_t step, double mean_reward);
  // Actors whose last heartbeat (or registration) is within the timeout.
  int ActorsAlive() const;
  // Tells actors (in heartbeat and registration replies) that the run is ending.
  void RequestShutdown() { shutdown_requested_ = true; }
  // Actors of this run that may still be reconnecting from a learner this one
  // replaces (those a resumed checkpoint has data cursors for): until they
  // register, they count as heard from at this call (see WaitUntilActorsTold).
  void ExpectActors(const std::vector<std::string>& actor_ids);
  // After RequestShutdown: waits until every actor heard from lately (within three
  // heartbeat intervals) has been told, in a heartbeat or registration reply, or
  // `deadline`. An actor heard from without being registered (it called before
  // re-registering with a restarted learner) counts too. Returns how many were
  // not told.
  int WaitUntilActorsTold(absl::Time deadline);

 private:
  class WeightStream;
  struct ActorInfo {
    std::string hostname;
    uint32_t pid = 0;
    uint64_t policy_version = 0;
    bool told_shutdown = false;
    absl::Time last_seen;
  };
  // Whether `actor_id` is registered; notes the call either way.
  bool Known(const std::string& actor_id);
  void HeardUnregistered(const std::string& actor_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records that `actor_id` was heard from (registration or heartbeat) now.
  void MarkHeartbeat(const std::string& actor_id);

  const LearnerServiceOptions options_;
  Ingestor* const ingestor_;
  WeightPublisher* const publisher_;
  // Unix time of each actor's last registration or heartbeat; null without a
  // registry.
  prometheus::Family<prometheus::Gauge>* heartbeats_ = nullptr;
  std::atomic<uint64_t> step_{0};
  std::atomic<double> mean_reward_{0};
  std::atomic<bool> shutdown_requested_{false};

  mutable absl::Mutex mu_;
  std::map<std::string, ActorInfo> actors_ ABSL_GUARDED_BY(mu_);
  // Actors that called without being registered, and when they last did.
  std::map<std::string, absl::Time> unregistered_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_LEARNER_SERVICE_H_
