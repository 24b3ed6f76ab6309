#include "actor/learner_client.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/metrics.h"
#include "common/weight_reader.h"
#include "common/wire_names.h"
#include "glog/logging.h"

namespace nbrl::actor {
namespace {

std::chrono::system_clock::time_point ToChrono(absl::Time t) {
  return absl::ToChronoTime(t);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LearnerClient>> LearnerClient::Create(
    LearnerClientOptions options, prometheus::Registry* registry) {
  (void)registry;
  if (options.address.empty()) {
    return absl::InvalidArgumentError("learner address is empty (host:port)");
  }
  if (options.actor_id.empty()) return absl::InvalidArgumentError("actor_id is empty");
  if (options.max_unacked == 0) {
    return absl::InvalidArgumentError("max_unacked must be at least 1");
  }
  return std::unique_ptr<LearnerClient>(new LearnerClient(std::move(options)));
}

LearnerClient::LearnerClient(LearnerClientOptions options)
    : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options_.max_message_bytes);
  args.SetMaxSendMessageSize(options_.max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.backoff_max)));
  channel_ = options_.auth.CreateChannel(options_.address, args);
  stub_ = v1::LearnerService::NewStub(channel_);
}

LearnerClient::~LearnerClient() { Close(); }

absl::Status LearnerClient::RegisterOnce() {
  grpc::ClientContext ctx;
  options_.auth.Apply(&ctx);
  ctx.set_deadline(ToChrono(absl::Now() + options_.rpc_timeout));
  v1::RegisterActorRequest req;
  req.set_actor_id(options_.actor_id);
  req.set_hostname(options_.hostname);
  req.set_pid(static_cast<uint32_t>(::getpid()));
  req.set_policy_version(policy_version_.load());
  req.set_group_size(options_.group_size);
  v1::RegisterActorResponse resp;
  grpc::Status st = stub_->RegisterActor(&ctx, req, &resp);
  if (!st.ok()) return common::FromGrpcStatus(st);
  absl::MutexLock lock(&mu_);
  if (!registered_) {
    registered_ = true;
    if (resp.has_data_cursor()) data_cursor_ = resp.data_cursor();
  }
  if (run_id_.empty()) {
    run_id_ = resp.run_id();
  } else if (run_id_ != resp.run_id()) {
    LOG(ERROR) << "the learner at " << options_.address << " now runs '"
               << resp.run_id() << "', not '" << run_id_ << "'";
  }
  absl::Duration hb = absl::Seconds(resp.heartbeat_interval().seconds()) +
                      absl::Nanoseconds(resp.heartbeat_interval().nanos());
  if (hb > absl::ZeroDuration()) heartbeat_interval_ = hb;
  learner_version_ = std::max(learner_version_.load(), resp.current_policy_version());
  if (resp.shutdown_requested() && !shutdown_requested_) {
    LOG(INFO) << "the learner at " << options_.address << " says the run has ended";
    shutdown_requested_ = true;  // under mu_: wakes a Send waiting for room
  }
  return absl::OkStatus();
}

absl::Status LearnerClient::RegisterWithRetry(absl::Time deadline) {
  absl::Duration delay = options_.backoff_initial;
  while (true) {
    absl::Status st = RegisterOnce();
    if (st.ok()) return st;
    if (absl::IsUnauthenticated(st)) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the learner at ", options_.address, " refused this actor: ", st.message()));
    }
    if (absl::IsInvalidArgument(st)) return st;
    if (absl::Now() + delay > deadline) {
      return absl::UnavailableError(absl::StrCat("cannot register with the learner at ",
                                                 options_.address, ": ", st.message()));
    }
    LOG(WARNING) << "registering with the learner at " << options_.address
                 << " failed (" << st << "); retrying in "
                 << absl::FormatDuration(delay);
    if (!Backoff(&delay)) return absl::CancelledError("closing");
  }
}

absl::Status LearnerClient::Start(uint64_t policy_version, absl::Time deadline) {
  policy_version_ = policy_version;
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("LearnerClient already started");
  }
  absl::Status st = RegisterWithRetry(deadline);
  if (!st.ok()) return st;
  absl::MutexLock lock(&mu_);
  started_ = true;
  stream_thread_ = std::thread([this] { StreamLoop(); });
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  LOG(INFO) << "registered with the learner at " << options_.address << " (run "
            << run_id_ << ")";
  return absl::OkStatus();
}

bool LearnerClient::Backoff(absl::Duration* delay) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&closing_), *delay);
  *delay = std::min(*delay * 2, options_.backoff_max);
  return !closing_;
}

absl::Status LearnerClient::Send(v1::TrajectoryGroup group, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (!started_) return absl::FailedPreconditionError("call Start before Send");
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || shutdown_requested_ || unacked_.size() < options_.max_unacked;
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&room), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat(options_.max_unacked,
                     " groups are still waiting for the learner's acknowledgement"));
  }
  if (closing_) return absl::CancelledError("the learner client is closing");
  if (shutdown_requested_ && unacked_.size() >= options_.max_unacked) {
    return absl::CancelledError("the learner ended the run");
  }
  unacked_.push_back(std::move(group));
  return absl::OkStatus();
}

absl::Status LearnerClient::Flush(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || unacked_.empty();
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&drained), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat(unacked_.size(), " groups are not acknowledged yet"));
  }
  if (!unacked_.empty())
    return absl::CancelledError("closed before every group was acknowledged");
  return absl::OkStatus();
}

void LearnerClient::StreamLoop() {
  absl::Duration delay = options_.backoff_initial;
  while (true) {
    grpc::ClientContext ctx;
    options_.auth.Apply(&ctx);
    {
      absl::MutexLock lock(&mu_);
      if (closing_) return;
      stream_context_ = &ctx;
      stats_.resent += to_resend_;
      to_resend_ = 0;
      written_ = 0;  // every unacknowledged group goes (again) on this stream
    }
    auto stream = stub_->PushTrajectories(&ctx);
    std::atomic<bool> broken{false};
    std::atomic<bool> progressed{false};
    std::thread reader([&] {
      v1::GroupAck ack;
      while (stream->Read(&ack)) {
        absl::MutexLock lock(&mu_);
        if (written_ == 0 || unacked_.empty()) {
          LOG(ERROR) << "the learner acknowledged group " << ack.group_id()
                     << " that was not sent on this stream";
          continue;
        }
        if (unacked_.front().group_id() != ack.group_id()) {
          LOG(ERROR) << "acknowledgement for " << ack.group_id() << " while "
                     << unacked_.front().group_id() << " was expected";
        }
        unacked_.pop_front();
        --written_;
        stats_.acknowledged++;
        stats_.results[common::AckResultName(ack.result())]++;
        learner_version_ =
            std::max(learner_version_.load(), ack.current_policy_version());
        if (ack.result() == v1::GroupAck::RESULT_INVALID) {
          LOG(ERROR) << "the learner refused a group: " << ack.message();
        }
        progressed = true;
      }
      absl::MutexLock lock(&mu_);  // wakes the writer to notice
      broken = true;
    });
    while (true) {
      v1::TrajectoryGroup next;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return closing_ || broken.load() || written_ < unacked_.size();
        };
        mu_.Await(absl::Condition(&ready));
        if (closing_ || broken) break;
        next = unacked_[written_];
        ++written_;
        stats_.sent++;
      }
      if (!stream->Write(next)) break;
    }
    ctx.TryCancel();
    reader.join();
    grpc::Status status = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      stream_context_ = nullptr;
      if (closing_) return;
      stats_.reconnects++;
      to_resend_ = written_;
    }
    if (progressed) delay = options_.backoff_initial;
    LOG(WARNING) << "trajectory stream to " << options_.address << " ended ("
                 << status.error_message() << "); reconnecting in "
                 << absl::FormatDuration(delay);
    if (!Backoff(&delay)) return;
    if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      absl::Status st = RegisterOnce();
      if (!st.ok()) LOG(WARNING) << "re-registering failed: " << st;
    }
  }
}

void LearnerClient::HeartbeatLoop() {
  while (true) {
    absl::Duration interval;
    {
      absl::MutexLock lock(&mu_);
      interval = heartbeat_interval_;
      if (mu_.AwaitWithTimeout(absl::Condition(&closing_), interval)) return;
    }
    grpc::ClientContext ctx;
    options_.auth.Apply(&ctx);
    ctx.set_deadline(ToChrono(absl::Now() + options_.rpc_timeout));
    v1::HeartbeatRequest req;
    req.set_actor_id(options_.actor_id);
    req.set_policy_version(policy_version_.load());
    {
      absl::MutexLock lock(&mu_);
      req.set_groups_sent(stats_.acknowledged);
    }
    v1::HeartbeatResponse resp;
    grpc::Status st = stub_->Heartbeat(&ctx, req, &resp);
    if (st.ok()) {
      learner_version_ =
          std::max(learner_version_.load(), resp.current_policy_version());
      if (resp.shutdown_requested()) {
        absl::MutexLock lock(&mu_);  // wakes a Send waiting for room
        shutdown_requested_ = true;
      }
    } else if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      (void)RegisterOnce();
    }
  }
}

void LearnerClient::FollowWeights(
    uint64_t have_version,
    std::function<void(std::shared_ptr<common::WeightVersion>)> on_version) {
  absl::MutexLock lock(&mu_);
  CHECK(!weight_thread_.joinable()) << "FollowWeights called twice";
  weight_thread_ = std::thread(
      [this, have_version, f = std::move(on_version)] { WeightLoop(have_version, f); });
}

void LearnerClient::WeightLoop(
    uint64_t have_version,
    std::function<void(std::shared_ptr<common::WeightVersion>)> on_version) {
  absl::Duration delay = options_.backoff_initial;
  while (true) {
    grpc::ClientContext ctx;
    options_.auth.Apply(&ctx);
    {
      absl::MutexLock lock(&mu_);
      if (closing_) return;
      weight_context_ = &ctx;
    }
    v1::SubscribeWeightsRequest req;
    req.set_actor_id(options_.actor_id);
    req.set_have_version(have_version);
    common::WeightAssembler assembler;
    grpc::Status st = common::ReadWeightStream(
        channel_, &ctx, req, &assembler, [&](std::shared_ptr<common::WeightVersion> v) {
          have_version = v->manifest.version();
          {
            absl::MutexLock lock(&mu_);
            stats_.weight_versions++;
          }
          on_version(std::move(v));
          delay = options_.backoff_initial;
        });
    if (st.error_code() == grpc::StatusCode::DATA_LOSS) {
      LOG(WARNING) << "dropped a corrupt weight stream: " << st.error_message();
    }
    {
      absl::MutexLock lock(&mu_);
      weight_context_ = nullptr;
      if (closing_) return;
    }
    LOG(WARNING) << "weight stream from " << options_.address << " ended ("
                 << st.error_message() << "); resubscribing from version "
                 << have_version;
    if (!Backoff(&delay)) return;
    if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) (void)RegisterOnce();
  }
}

LearnerClientStats LearnerClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void LearnerClient::Close() {
  size_t dropped;
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    closing_ = true;
    if (stream_context_) stream_context_->TryCancel();
    if (weight_context_) weight_context_->TryCancel();
    dropped = unacked_.size();
  }
  if (stream_thread_.joinable()) stream_thread_.join();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (weight_thread_.joinable()) weight_thread_.join();
  if (dropped > 0) {
    LOG(WARNING) << "closed with " << dropped
                 << " trajectory groups unacknowledged; they were not delivered";
  }
}

}  // namespace nbrl::actor
