#include "sandbox_worker/sandbox_service.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/version.h"

namespace nbrl::sandbox {
namespace {

using common::ToGrpcStatus;

// Duration fields arrive from clients; reject what absl cannot represent sanely.
absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         const char* field) {
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() >= 1000000000 ||
      d.seconds() > 365LL * 24 * 3600) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be a non-negative duration under a year"));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

nbrl::v1::TodoStatus TodoStatusToProto(const std::string& s) {
  if (s == "pending") return nbrl::v1::TODO_STATUS_PENDING;
  if (s == "in_progress") return nbrl::v1::TODO_STATUS_IN_PROGRESS;
  if (s == "done") return nbrl::v1::TODO_STATUS_DONE;
  if (s == "dropped") return nbrl::v1::TODO_STATUS_DROPPED;
  return nbrl::v1::TODO_STATUS_UNSPECIFIED;
}

nbrl::v1::CellTermination TerminationToProto(Termination t) {
  switch (t) {
    case Termination::kCompleted:
      return nbrl::v1::CELL_TERMINATION_COMPLETED;
    case Termination::kTimeout:
      return nbrl::v1::CELL_TERMINATION_TIMEOUT;
    case Termination::kSessionKilled:
      return nbrl::v1::CELL_TERMINATION_SESSION_KILLED;
  }
  return nbrl::v1::CELL_TERMINATION_UNSPECIFIED;
}

}  // namespace

void ToProto(const CellResult& r, nbrl::v1::ExecuteResponse* out) {
  out->set_stdout(r.stdout_text);
  out->set_stderr(r.stderr_text);
  out->set_stdout_truncated(r.stdout_truncated);
  out->set_stderr_truncated(r.stderr_truncated);
  out->set_result(r.result);
  if (r.error) {
    out->mutable_error()->set_name(r.error->name);
    out->mutable_error()->set_message(r.error->message);
    out->mutable_error()->set_traceback(r.error->traceback);
  }
  out->set_termination(TerminationToProto(r.termination));
  out->set_state_lost(r.state_lost);
  out->set_kill_reason(r.kill_reason);
  for (const TodoItem& t : r.notepad.todos) {
    nbrl::v1::TodoItem* item = out->mutable_notepad()->add_todos();
    item->set_id(static_cast<uint32_t>(t.id));
    item->set_text(t.text);
    item->set_status(TodoStatusToProto(t.status));
  }
  for (const std::string& f : r.notepad.facts) out->mutable_notepad()->add_facts(f);
  out->mutable_notepad()->set_draft(r.notepad.draft);
  out->set_has_final_answer(r.final_answer.has_value());
  if (r.final_answer) out->set_final_answer(*r.final_answer);
  for (const VariableInfo& v : r.variables) {
    nbrl::v1::Variable* var = out->add_variables();
    var->set_name(v.name);
    var->set_type(v.type);
    var->set_size(v.size);
    var->set_preview(v.preview);
  }
  for (const ToolCallRecord& c : r.tool_calls) {
    nbrl::v1::ToolCall* call = out->add_tool_calls();
    call->set_tool(c.tool);
    call->set_ok(c.ok);
    SetDuration(c.latency, call->mutable_latency());
    call->set_error(c.error);
  }
  SetDuration(r.duration, out->mutable_duration());
}

void SandboxServiceImpl::AddTo(grpc::ServerBuilder* builder) {
  builder->RegisterService(this);
  builder->SetMaxReceiveMessageSize(MaxMessageBytes(manager_->options()));
}

int MaxMessageBytes(const SessionManagerOptions& options) {
  constexpr size_t kEnvelope = 64 << 10;
  constexpr size_t kMax = std::numeric_limits<int>::max();
  return static_cast<int>(std::min(options.max_code_bytes, kMax - kEnvelope) +
                          kEnvelope);
}

grpc::Status SandboxServiceImpl::OpenSession(grpc::ServerContext* ctx,
                                             const nbrl::v1::OpenSessionRequest* req,
                                             nbrl::v1::OpenSessionResponse* resp) {
  if (grpc::Status s = common::Authenticate(auth_, *ctx, "OpenSession"); !s.ok()) {
    return s;
  }
  absl::Time start = absl::Now();
  OpenRequest open;
  open.client_id = req->client_id();
  open.label = req->label();
  open.tools.assign(req->tools().begin(), req->tools().end());
  open.no_tools = req->no_tools();
  if (req->has_idle_timeout()) {
    absl::StatusOr<absl::Duration> idle =
        FromProto(req->idle_timeout(), "idle_timeout");
    if (!idle.ok()) return ToGrpcStatus(idle.status());
    open.idle_timeout = *idle;
  }
  absl::StatusOr<std::string> id = manager_->Open(open);
  if (!id.ok()) return ToGrpcStatus(id.status());
  resp->set_session_id(*id);
  SetDuration(absl::Now() - start, resp->mutable_open_time());
  return grpc::Status::OK;
}

grpc::Status SandboxServiceImpl::Execute(grpc::ServerContext* ctx,
                                         const nbrl::v1::ExecuteRequest* req,
                                         nbrl::v1::ExecuteResponse* resp) {
  if (grpc::Status s = common::Authenticate(auth_, *ctx, "Execute"); !s.ok()) {
    return s;
  }
  CellRequest cell;
  cell.code = req->code();
  cell.timeout = absl::ZeroDuration();
  if (req->has_timeout()) {
    absl::StatusOr<absl::Duration> t = FromProto(req->timeout(), "timeout");
    if (!t.ok()) return ToGrpcStatus(t.status());
    cell.timeout = *t;
  }
  cell.max_output_bytes = req->max_output_bytes();
  absl::StatusOr<CellResult> r = manager_->Execute(req->session_id(), std::move(cell));
  if (!r.ok()) return ToGrpcStatus(r.status());
  ToProto(*r, resp);
  return grpc::Status::OK;
}

grpc::Status SandboxServiceImpl::CloseSession(grpc::ServerContext* ctx,
                                              const nbrl::v1::CloseSessionRequest* req,
                                              nbrl::v1::CloseSessionResponse* resp) {
  if (grpc::Status s = common::Authenticate(auth_, *ctx, "CloseSession"); !s.ok()) {
    return s;
  }
  if (absl::Status st = SessionManager::CheckSessionId(req->session_id()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  resp->set_existed(manager_->Close(req->session_id()));
  return grpc::Status::OK;
}

grpc::Status SandboxServiceImpl::Health(grpc::ServerContext* ctx,
                                        const nbrl::v1::HealthRequest*,
                                        nbrl::v1::HealthResponse* resp) {
  if (grpc::Status s = common::Authenticate(auth_, *ctx, "Health"); !s.ok()) {
    return s;
  }
  SessionManager::Stats s = manager_->stats();
  resp->set_status(s.draining ? nbrl::v1::HealthResponse::SERVING_STATUS_DRAINING
                              : nbrl::v1::HealthResponse::SERVING_STATUS_SERVING);
  resp->set_sessions_active(static_cast<uint32_t>(s.active));
  resp->set_sessions_warm(static_cast<uint32_t>(s.warm));
  resp->set_sessions_capacity(static_cast<uint32_t>(s.capacity));
  resp->set_version(kVersion);
  return grpc::Status::OK;
}

grpc::Status SandboxServiceImpl::Attach(
    grpc::ServerContext* ctx, const nbrl::v1::AttachRequest* req,
    grpc::ServerWriter<nbrl::v1::AttachEvent>* writer) {
  (void)writer;
  if (grpc::Status s = common::Authenticate(auth_, *ctx, "Attach"); !s.ok()) {
    return s;
  }
  if (absl::Status st = SessionManager::CheckClientId(req->client_id()); !st.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(st.message()));
  }
  while (!ctx->IsCancelled()) {
    if (shutting_down_.load()) return grpc::Status::OK;
    absl::SleepFor(absl::Milliseconds(100));
  }
  manager_->CloseClient(req->client_id());
  return grpc::Status::CANCELLED;
}

void SandboxServiceImpl::Shutdown() { shutting_down_ = true; }

}  // namespace nbrl::sandbox
