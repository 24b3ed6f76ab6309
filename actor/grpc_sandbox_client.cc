#include "actor/grpc_sandbox_client.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/utf8.h"
#include "glog/logging.h"

namespace nbrl::actor {
namespace {

void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  out.set_seconds(absl::ToInt64Seconds(d));
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d) % 1000000000));
  return out;
}

const char* TodoStatusName(v1::TodoStatus s) {
  switch (s) {
    case v1::TODO_STATUS_IN_PROGRESS:
      return "in_progress";
    case v1::TODO_STATUS_DONE:
      return "done";
    case v1::TODO_STATUS_DROPPED:
      return "dropped";
    default:
      return "pending";
  }
}

class GrpcSession : public agent::SandboxSession {
 public:
  GrpcSession(std::shared_ptr<v1::SandboxService::Stub> stub, std::string id,
              const GrpcSandboxOptions& options)
      : stub_(std::move(stub)), id_(std::move(id)), options_(options) {}
  ~GrpcSession() override { (void)Close(); }

  absl::StatusOr<agent::CellResult> Execute(const std::string& code,
                                            absl::Duration timeout) override {
    if (closed_) return absl::FailedPreconditionError("the session is closed");
    grpc::ClientContext ctx;
    options_.auth.Apply(&ctx);
    SetDeadline(&ctx, timeout + options_.rpc_margin);
    v1::ExecuteRequest req;
    req.set_session_id(id_);
    // Model output may hold any bytes; a proto string must be UTF-8 (and so must
    // Python source).
    req.set_code(common::SanitizeUtf8(code));
    *req.mutable_timeout() = ToProto(timeout);
    v1::ExecuteResponse resp;
    grpc::Status st = stub_->Execute(&ctx, req, &resp);
    if (!st.ok()) {
      return absl::Status(
          common::FromGrpcStatus(st).code(),
          absl::StrCat("sandbox session ", id_, ": ", st.error_message()));
    }
    return FromProto(resp);
  }

  absl::Status Close() override {
    if (closed_) return absl::OkStatus();
    closed_ = true;
    grpc::ClientContext ctx;
    options_.auth.Apply(&ctx);
    SetDeadline(&ctx, options_.open_timeout);
    v1::CloseSessionRequest req;
    req.set_session_id(id_);
    v1::CloseSessionResponse resp;
    return common::FromGrpcStatus(stub_->CloseSession(&ctx, req, &resp));
  }

 private:
  std::shared_ptr<v1::SandboxService::Stub> stub_;
  const std::string id_;
  const GrpcSandboxOptions options_;  // a copy: a session may outlive its client
  bool closed_ = false;
};

}  // namespace

agent::CellResult FromProto(const v1::ExecuteResponse& r) {
  agent::CellResult out;
  out.stdout_text = r.stdout();
  out.stderr_text = r.stderr();
  out.stdout_truncated = r.stdout_truncated();
  out.stderr_truncated = r.stderr_truncated();
  out.result = r.result();
  out.has_error = r.has_error() && !r.error().name().empty();
  out.error_name = r.error().name();
  out.error_message = r.error().message();
  out.traceback = r.error().traceback();
  switch (r.termination()) {
    case v1::CELL_TERMINATION_TIMEOUT:
      out.end = agent::CellEnd::kTimeout;
      break;
    case v1::CELL_TERMINATION_SESSION_KILLED:
      out.end = agent::CellEnd::kSessionKilled;
      break;
    default:
      out.end = agent::CellEnd::kCompleted;
  }
  out.state_lost = r.state_lost();
  out.kill_reason = r.kill_reason();
  for (const v1::TodoItem& t : r.notepad().todos()) {
    out.notepad.todos.push_back(
        {static_cast<int>(t.id()), t.text(), TodoStatusName(t.status())});
  }
  out.notepad.facts.assign(r.notepad().facts().begin(), r.notepad().facts().end());
  out.notepad.draft = r.notepad().draft();
  out.has_final_answer = r.has_final_answer();
  out.final_answer = r.final_answer();
  for (const v1::Variable& v : r.variables()) {
    out.variables.push_back({v.name(), v.type(), v.size(), v.preview()});
  }
  out.tool_calls = r.tool_calls_size();
  out.duration =
      absl::Seconds(r.duration().seconds()) + absl::Nanoseconds(r.duration().nanos());
  return out;
}

absl::StatusOr<std::unique_ptr<GrpcSandboxClient>> GrpcSandboxClient::Create(
    GrpcSandboxOptions options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError(
        "sandbox address is empty (unix:PATH or host:port)");
  }
  return std::unique_ptr<GrpcSandboxClient>(new GrpcSandboxClient(std::move(options)));
}

GrpcSandboxClient::GrpcSandboxClient(GrpcSandboxOptions options)
    : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  channel_ = options_.auth.CreateChannel(options_.address, args);
  stub_ = v1::SandboxService::NewStub(channel_);
  if (!options_.client_id.empty())
    attach_thread_ = std::thread([this] { AttachLoop(); });
}

GrpcSandboxClient::~GrpcSandboxClient() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    if (attach_context_ != nullptr) attach_context_->TryCancel();
  }
  if (attach_thread_.joinable()) attach_thread_.join();
}

void GrpcSandboxClient::AttachLoop() {
  while (true) {
    grpc::ClientContext ctx;
    options_.auth.Apply(&ctx);
    ctx.set_wait_for_ready(true);
    {
      absl::MutexLock lock(&mu_);
      if (closing_) return;
      attach_context_ = &ctx;
    }
    v1::AttachRequest req;
    req.set_client_id(options_.client_id);
    auto reader = stub_->Attach(&ctx, req);
    v1::AttachEvent event;
    while (reader->Read(&event)) {
    }
    grpc::Status st = reader->Finish();
    if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      LOG_EVERY_T(WARNING, 60) << "the sandbox at " << options_.address
                               << " refused Attach: " << st.error_message();
    }
    absl::MutexLock lock(&mu_);
    attach_context_ = nullptr;
    // Re-attach after a worker restart, unless closing.
    if (mu_.AwaitWithTimeout(absl::Condition(&closing_), absl::Seconds(1))) return;
  }
}

absl::StatusOr<std::unique_ptr<agent::SandboxSession>> GrpcSandboxClient::OpenSession(
    const agent::SessionOptions& options) {
  grpc::ClientContext ctx;
  options_.auth.Apply(&ctx);
  SetDeadline(&ctx, options_.open_timeout);
  v1::OpenSessionRequest req;
  req.set_client_id(options_.client_id);
  req.set_label(options.label);
  for (const auto& t : options.tools) req.add_tools(t);
  req.set_no_tools(options.no_tools);
  v1::OpenSessionResponse resp;
  grpc::Status st = stub_->OpenSession(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::Status(common::FromGrpcStatus(st).code(),
                        absl::StrCat("opening a sandbox session at ", options_.address,
                                     ": ", st.error_message()));
  }
  return std::unique_ptr<agent::SandboxSession>(
      new GrpcSession(stub_, resp.session_id(), options_));
}

absl::StatusOr<v1::HealthResponse> GrpcSandboxClient::Health(absl::Duration timeout) {
  grpc::ClientContext ctx;
  options_.auth.Apply(&ctx);
  SetDeadline(&ctx, timeout);
  ctx.set_wait_for_ready(true);
  v1::HealthResponse resp;
  grpc::Status st = stub_->Health(&ctx, v1::HealthRequest(), &resp);
  if (!st.ok()) return common::FromGrpcStatus(st);
  return resp;
}

}  // namespace nbrl::actor
