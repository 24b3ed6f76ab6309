#include "learner/learner_service.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/metrics.h"
#include "glog/logging.h"

namespace nbrl::learner {
namespace {

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// Ids (actor ids) and host names, in bytes.
constexpr size_t kMaxIdBytes = 256;

// INVALID_ARGUMENT unless `actor_id` is a well-formed id.
grpc::Status CheckActorId(const std::string& actor_id) {
  return common::ToGrpcStatus(
      ValidateText("actor_id", actor_id, kMaxIdBytes, /*required=*/true));
}

// A reactor that only reports `status`: refused subscriptions.
class RefusedWeightStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedWeightStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// slice user data: keeps the published version alive while gRPC holds the slice.
void ReleaseVersion(void* user_data) {
  delete static_cast<std::shared_ptr<const PublishedVersion>*>(user_data);
}

// Chunk `index` of `p` as a serialized nbrl.v1.WeightChunk whose data is not
// copied: the header's encoding, then field 4 (data) as its tag and length, then
// a slice that points into the published version and holds a reference to it.
grpc::ByteBuffer EncodeChunk(const std::shared_ptr<const PublishedVersion>& p,
                             size_t index) {
  const common::WeightVersion& v = *p->version();
  absl::string_view data = common::ChunkData(v, p->chunk_bytes(), index);
  std::string head = common::ChunkHeader(v, p->chunk_bytes(), index, p->ChunkCrc(index))
                         .SerializeAsString();
  if (data.empty()) {
    grpc::Slice only(head);
    return grpc::ByteBuffer(&only, 1);
  }
  // The data field's tag and length, as protobuf writes them.
  using google::protobuf::internal::WireFormatLite;
  uint8_t prefix[10];
  uint8_t* end = WireFormatLite::WriteTagToArray(
      v1::WeightChunk::kDataFieldNumber, WireFormatLite::WIRETYPE_LENGTH_DELIMITED,
      prefix);
  end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      static_cast<uint32_t>(data.size()), end);
  head.append(reinterpret_cast<const char*>(prefix), end - prefix);
  grpc::Slice slices[2] = {
      grpc::Slice(head),
      grpc::Slice(const_cast<char*>(data.data()), data.size(), &ReleaseVersion,
                  new std::shared_ptr<const PublishedVersion>(p))};
  return grpc::ByteBuffer(slices, 2);
}

}  // namespace

// One subscriber's weight stream: sends the current version when it differs from
// the subscriber's, one chunk in flight at a time, then waits (no thread held) for
// the publisher to wake it. A version is always sent whole; a subscriber that is
// slower than the publications gets the newest one next. Ends OK after the
// publisher's Close (between versions), CANCELLED when the subscriber goes away.
class LearnerServiceImpl::WeightStream final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  WeightStream(WeightPublisher* publisher, uint64_t have_version)
      : publisher_(publisher), have_(have_version) {
    subscription_ = publisher_->Subscribe([this] { Pump(); });
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        broken_ = true;
      } else {
        publisher_->RecordSent(sent_bytes_);
        if (++index_ == sending_->chunk_count()) {
          publisher_->RecordServed(absl::Now() - started_);
          have_ = sending_->number();
          sending_.reset();
        }
      }
    }
    Pump();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
    }
    Pump();
  }

  void OnDone() override {
    publisher_->Unsubscribe(subscription_);  // no Pump runs after this
    delete this;
  }

 private:
  // Starts the next write or finishes the call, if either is due. Called from
  // gRPC's reactions and from the publisher's wake-ups.
  void Pump() {
    grpc::Status finish;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return;
      if (!broken_ && sending_ == nullptr) {
        std::shared_ptr<const PublishedVersion> current =
            publisher_->current_published();
        if (publisher_->closed()) {
          finish = grpc::Status::OK;
        } else if (current == nullptr || current->number() == have_) {
          return;  // wait for a wake-up
        } else {
          sending_ = std::move(current);
          index_ = 0;
          started_ = absl::Now();
        }
      }
      if (broken_) {
        finish = grpc::Status::CANCELLED;
      } else if (sending_ != nullptr) {
        buffer_ = EncodeChunk(sending_, index_);
        sent_bytes_ =
            common::ChunkData(*sending_->version(), sending_->chunk_bytes(), index_)
                .size();
        writing_ = true;
        // Under the lock: the write's completion (OnWriteDone, on a gRPC thread)
        // takes it next, which orders consecutive writes started on different
        // threads for ThreadSanitizer too. gRPC runs a user reactor's reactions
        // on its own threads, never inside StartWrite, so this cannot deadlock.
        StartWrite(&buffer_);
        return;
      }
      finished_ = true;
    }
    // Outside the lock: OnDone may run (and delete this) as soon as Finish is
    // called, so nothing here touches a member afterwards.
    Finish(finish);
  }

  WeightPublisher* const publisher_;
  uint64_t subscription_ = 0;

  absl::Mutex mu_;
  uint64_t have_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const PublishedVersion> sending_ ABSL_GUARDED_BY(mu_);
  size_t index_ ABSL_GUARDED_BY(mu_) = 0;
  size_t sent_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time started_ ABSL_GUARDED_BY(mu_);
  grpc::ByteBuffer buffer_ ABSL_GUARDED_BY(mu_);  // the chunk in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

void LearnerServiceImpl::AddTo(grpc::ServerBuilder* builder) {
  builder->RegisterService(this);
  builder->SetMaxReceiveMessageSize(options_.max_message_bytes);
}

LearnerServiceImpl::LearnerServiceImpl(LearnerServiceOptions options,
                                       Ingestor* ingestor, WeightPublisher* publisher,
                                       prometheus::Registry* registry)
    : options_(std::move(options)), ingestor_(ingestor), publisher_(publisher) {
  if (registry != nullptr) {
    heartbeats_ = &common::GaugeFamily(
        *registry, "nbrl_learner_actor_heartbeat_timestamp_seconds",
        "Unix time of each actor's last registration or heartbeat.");
  }
}

void LearnerServiceImpl::MarkHeartbeat(const std::string& actor_id) {
  if (heartbeats_ != nullptr)
    heartbeats_->Add({{"actor", actor_id}}).SetToCurrentTime();
}

bool LearnerServiceImpl::Known(const std::string& actor_id) {
  absl::MutexLock lock(&mu_);
  auto it = actors_.find(actor_id);
  if (it == actors_.end()) {
    HeardUnregistered(actor_id);
    return false;
  }
  it->second.last_seen = absl::Now();
  return true;
}

void LearnerServiceImpl::HeardUnregistered(const std::string& actor_id) {
  // Ids are checked and callers authenticated; the bound only keeps a flood of
  // made-up ids from growing the map. Entries past the window WaitUntilActorsTold
  // looks at make room first.
  constexpr size_t kMaxUnregistered = 4096;
  const absl::Time now = absl::Now();
  if (unregistered_.size() >= kMaxUnregistered && unregistered_.count(actor_id) == 0) {
    const absl::Time recent = now - 3 * options_.heartbeat_interval;
    for (auto it = unregistered_.begin(); it != unregistered_.end();) {
      it = it->second < recent ? unregistered_.erase(it) : std::next(it);
    }
    if (unregistered_.size() >= kMaxUnregistered) return;
  }
  unregistered_[actor_id] = now;
}

void LearnerServiceImpl::ExpectActors(const std::vector<std::string>& actor_ids) {
  absl::MutexLock lock(&mu_);
  for (const std::string& id : actor_ids) {
    if (actors_.count(id) == 0) HeardUnregistered(id);
  }
}

grpc::Status LearnerServiceImpl::RegisterActor(grpc::ServerContext* context,
                                               const v1::RegisterActorRequest* request,
                                               v1::RegisterActorResponse* response) {
  if (grpc::Status s = common::Authenticate(options_.auth, *context, "RegisterActor");
      !s.ok()) {
    return s;
  }
  if (grpc::Status s = CheckActorId(request->actor_id()); !s.ok()) return s;
  if (absl::Status s = ValidateText("hostname", request->hostname(), kMaxIdBytes,
                                    /*required=*/false);
      !s.ok()) {
    return common::ToGrpcStatus(s);
  }
  const GroupLimits& limits = ingestor_->limits();
  if (request->group_size() > limits.max_trajectories) {
    return Invalid(absl::StrCat("group_size ", request->group_size(),
                                " is more than the ", limits.max_trajectories,
                                " rollouts a group may have"));
  }
  if (limits.group_size != 0 && request->group_size() != 0 &&
      request->group_size() != limits.group_size) {
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        absl::StrCat("actor '", request->actor_id(), "' makes groups of ",
                     request->group_size(), " rollouts; this learner takes ",
                     limits.group_size, " (actor.group_size must match)"));
  }
  {
    absl::MutexLock lock(&mu_);
    bool again = actors_.count(request->actor_id()) > 0;
    ActorInfo& a = actors_[request->actor_id()];
    a.hostname = request->hostname();
    a.pid = request->pid();
    a.policy_version = request->policy_version();
    a.last_seen = absl::Now();
    unregistered_.erase(request->actor_id());
    // An actor that comes back after the run ended hears it here.
    if (shutdown_requested_) {
      a.told_shutdown = true;
      response->set_shutdown_requested(true);
    }
    LOG(INFO) << (again ? "actor re-registered: " : "actor registered: ")
              << request->actor_id() << " (" << request->hostname() << ", pid "
              << request->pid() << ", policy version " << request->policy_version()
              << ")";
  }
  MarkHeartbeat(request->actor_id());
  response->set_run_id(options_.run_id);
  response->set_learner_rank(options_.rank);
  response->set_current_policy_version(publisher_->current_version());
  if (std::optional<uint64_t> cursor = ingestor_->DataCursor(request->actor_id())) {
    response->set_data_cursor(*cursor);
  }
  response->mutable_heartbeat_interval()->set_seconds(
      absl::ToInt64Seconds(options_.heartbeat_interval));
  response->mutable_heartbeat_interval()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(options_.heartbeat_interval) % 1000000000));
  return grpc::Status::OK;
}

grpc::Status LearnerServiceImpl::Heartbeat(grpc::ServerContext* context,
                                           const v1::HeartbeatRequest* request,
                                           v1::HeartbeatResponse* response) {
  if (grpc::Status s = common::Authenticate(options_.auth, *context, "Heartbeat");
      !s.ok()) {
    return s;
  }
  if (grpc::Status s = CheckActorId(request->actor_id()); !s.ok()) return s;
  bool shutdown = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = actors_.find(request->actor_id());
    if (it == actors_.end()) {
      HeardUnregistered(request->actor_id());
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("actor '", request->actor_id(),
                       "' is not registered; call RegisterActor first"));
    }
    it->second.last_seen = absl::Now();
    it->second.policy_version = request->policy_version();
    // One read: the actor is marked told exactly when its reply says so.
    shutdown = shutdown_requested_.load();
    it->second.told_shutdown = it->second.told_shutdown || shutdown;
  }
  MarkHeartbeat(request->actor_id());
  response->set_current_policy_version(publisher_->current_version());
  response->set_shutdown_requested(shutdown);
  return grpc::Status::OK;
}

int LearnerServiceImpl::WaitUntilActorsTold(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto untold = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int n = 0;
    const absl::Time recent = absl::Now() - 3 * options_.heartbeat_interval;
    for (const auto& [id, a] : actors_) {
      if (!a.told_shutdown && a.last_seen >= recent) ++n;
    }
    for (const auto& [id, heard] : unregistered_) {
      if (heard >= recent) ++n;
    }
    return n;
  };
  while (untold() > 0 && absl::Now() < deadline) {
    mu_.Unlock();
    absl::SleepFor(absl::Milliseconds(100));
    mu_.Lock();
  }
  return untold();
}

namespace {

// Writes a PushTrajectories stream's acks in order, each once its journal record
// is on disk, on a thread of its own, so that the stream's handler reads and
// decides the next groups meanwhile: one actor's stream is then not bounded by one
// fdatasync per group, and its records share syncs. An ack that waits for nothing
// (no journal, no sync, or a sync already done) and finds the acker idle is
// written by the handler's thread itself: no thread hop. The thread starts with
// the first ack that must wait.
class StreamAcker {
 public:
  using Stream = grpc::ServerReaderWriter<v1::GroupAck, v1::TrajectoryGroup>;
  StreamAcker(Ingestor* ingestor, grpc::ServerContext* context, Stream* stream)
      : ingestor_(ingestor), context_(context), stream_(stream) {}
  ~StreamAcker() { Finish().IgnoreError(); }

  // Sends `pending`'s ack when it is settled. False when the stream is finished
  // (its client is gone, or a settle failed): read no more.
  bool Send(Ingestor::PendingAck pending) {
    const bool waits =
        pending.journal != nullptr && pending.journal->NeedsSync(pending.record);
    absl::MutexLock lock(&mu_);
    if (!error_.ok() || broken_) return false;
    if (!waits && queue_.empty() && !busy_) {
      // The acker is idle with nothing queued: this thread may write.
      mu_.Unlock();
      absl::StatusOr<v1::GroupAck> ack = ingestor_->Settle(std::move(pending));
      const bool written = ack.ok() && stream_->Write(*ack);
      mu_.Lock();
      if (!ack.ok()) error_ = ack.status();
      if (!written) broken_ = true;
      return written;
    }
    // Bounded: the actor's own window (actor.max_unacked) keeps it far lower.
    auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.size() < kMaxQueued || broken_;
    };
    mu_.Await(absl::Condition(&room));
    if (broken_) return false;
    queue_.push_back(std::move(pending));
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
    return true;
  }

  // Writes every queued ack, stops the thread; the first settle failure or OK.
  absl::Status Finish() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  static constexpr size_t kMaxQueued = 256;

  void Run() {
    while (true) {
      Ingestor::PendingAck pending;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || done_;
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty() || broken_) return;
        pending = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      absl::StatusOr<v1::GroupAck> ack = ingestor_->Settle(std::move(pending));
      const bool written = ack.ok() && stream_->Write(*ack);
      absl::MutexLock lock(&mu_);
      busy_ = false;
      if (!written) {
        if (!ack.ok()) error_ = ack.status();
        broken_ = true;
        queue_.clear();
        // The handler may be blocked reading the next group: end the call.
        context_->TryCancel();
        return;
      }
    }
  }

  Ingestor* const ingestor_;
  grpc::ServerContext* const context_;
  Stream* const stream_;
  absl::Mutex mu_;
  std::deque<Ingestor::PendingAck> queue_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;    // the thread is settling or writing
  bool done_ ABSL_GUARDED_BY(mu_) = false;    // no more Sends
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a write failed, or a settle did
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace

grpc::Status LearnerServiceImpl::PushTrajectories(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::GroupAck, v1::TrajectoryGroup>* stream) {
  if (grpc::Status s =
          common::Authenticate(options_.auth, *context, "PushTrajectories");
      !s.ok()) {
    return s;
  }
  StreamAcker acker(ingestor_, context, stream);
  // Acks already decided are sent before the call ends, also when it ends in error.
  auto finish = [&](grpc::Status status) {
    absl::Status settled = acker.Finish();
    if (!settled.ok()) return common::ToGrpcStatus(settled);
    return status;
  };
  v1::TrajectoryGroup group;
  while (stream->Read(&group)) {
    if (grpc::Status s = CheckActorId(group.actor_id()); !s.ok()) return finish(s);
    if (!Known(group.actor_id())) {
      return finish(
          grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                       absl::StrCat("trajectory group ", group.group_id().substr(0, 64),
                                    " comes from unregistered actor '",
                                    group.actor_id(), "'; call RegisterActor first")));
    }
    absl::StatusOr<Ingestor::PendingAck> pending =
        ingestor_->Decide(std::move(group), publisher_->current_version(),
                          absl::Now() + options_.queue_wait);
    if (!pending.ok()) return finish(common::ToGrpcStatus(pending.status()));
    if (pending->ack.result() == v1::GroupAck::RESULT_INVALID) {
      LOG(WARNING) << "refused: " << pending->ack.message();
    }
    if (!acker.Send(std::move(*pending))) break;
    if (context->IsCancelled()) break;
  }
  return finish(grpc::Status::OK);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* LearnerServiceImpl::SubscribeWeights(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request) {
  // Weights are never served to an unauthenticated caller.
  if (grpc::Status s =
          common::Authenticate(options_.auth, *context, "SubscribeWeights");
      !s.ok()) {
    return new RefusedWeightStream(s);
  }
  v1::SubscribeWeightsRequest request;
  grpc::ByteBuffer copy = *raw_request;  // Deserialize consumes its buffer
  if (grpc::Status s =
          grpc::SerializationTraits<v1::SubscribeWeightsRequest>::Deserialize(&copy,
                                                                              &request);
      !s.ok()) {
    return new RefusedWeightStream(
        grpc::Status(grpc::StatusCode::INTERNAL,
                     "SubscribeWeights: the request does not parse as "
                     "nbrl.v1.SubscribeWeightsRequest"));
  }
  if (grpc::Status s = CheckActorId(request.actor_id()); !s.ok()) {
    return new RefusedWeightStream(s);
  }
  if (!Known(request.actor_id())) {
    return new RefusedWeightStream(
        grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                     absl::StrCat("actor '", request.actor_id(),
                                  "' is not registered; call RegisterActor first")));
  }
  return new WeightStream(publisher_, request.have_version());
}

grpc::Status LearnerServiceImpl::Status(grpc::ServerContext* context,
                                        const v1::StatusRequest*,
                                        v1::StatusResponse* response) {
  if (grpc::Status s = common::Authenticate(options_.auth, *context, "Status");
      !s.ok()) {
    return s;
  }
  IngestorStats s = ingestor_->stats();
  response->set_run_id(options_.run_id);
  response->set_learner_rank(options_.rank);
  response->set_world_size(options_.world_size);
  response->set_step(step_.load());
  response->set_policy_version(publisher_->current_version());
  response->set_actors_alive(static_cast<uint32_t>(ActorsAlive()));
  response->set_groups_accepted(s.accepted);
  response->set_groups_duplicate(s.duplicate);
  response->set_groups_stale(s.stale);
  response->set_groups_filtered(s.filtered);
  response->set_groups_invalid(s.invalid);
  response->set_queue_depth(static_cast<uint32_t>(s.queued));
  response->set_mean_reward(static_cast<float>(mean_reward_.load()));
  return grpc::Status::OK;
}

void LearnerServiceImpl::SetProgress(uint64_t step, double mean_reward) {
  step_ = step;
  mean_reward_ = mean_reward;
}

int LearnerServiceImpl::ActorsAlive() const {
  absl::MutexLock lock(&mu_);
  absl::Time now = absl::Now();
  int alive = 0;
  for (const auto& [id, a] : actors_) {
    if (now - a.last_seen <= options_.heartbeat_timeout) ++alive;
  }
  return alive;
}

}  // namespace nbrl::learner
