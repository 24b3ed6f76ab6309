#include "sandbox_worker/session.h"

#include <signal.h>
#include <sys/wait.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

namespace nbrl::sandbox {
namespace {

// How long a write of the cell to the driver may block.
constexpr absl::Duration kWriteTimeout = absl::Seconds(5);

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool Bool(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

absl::Status ParseResultFrame(const nlohmann::json& f, CellResult* r) {
  try {
    r->stdout_text = Str(f, "stdout");
    r->stderr_text = Str(f, "stderr");
    r->stdout_truncated = Bool(f, "stdout_truncated");
    r->stderr_truncated = Bool(f, "stderr_truncated");
    r->result = Str(f, "result");
    if (f.contains("error") && f["error"].is_object()) {
      const nlohmann::json& e = f["error"];
      r->error = CellError{Str(e, "name"), Str(e, "message"), Str(e, "traceback")};
    }
    if (f.contains("notepad") && f["notepad"].is_object()) {
      const nlohmann::json& n = f["notepad"];
      for (const nlohmann::json& t : n.value("todos", nlohmann::json::array())) {
        r->notepad.todos.push_back(
            {t.value("id", 0), Str(t, "text"), Str(t, "status")});
      }
      for (const nlohmann::json& fact : n.value("facts", nlohmann::json::array())) {
        if (fact.is_string()) r->notepad.facts.push_back(fact.get<std::string>());
      }
      r->notepad.draft = Str(n, "draft");
    }
    if (f.contains("final_answer") && f["final_answer"].is_string()) {
      r->final_answer = f["final_answer"].get<std::string>();
    }
    for (const nlohmann::json& v : f.value("variables", nlohmann::json::array())) {
      r->variables.push_back(
          {Str(v, "name"), Str(v, "type"), Str(v, "size"), Str(v, "preview")});
    }
    if (f.contains("duration_s") && f["duration_s"].is_number()) {
      r->duration = absl::Seconds(f["duration_s"].get<double>());
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("malformed result frame: ", e.what()));
  }
  return absl::OkStatus();
}

Session::Session(std::unique_ptr<SandboxProcess> process, const SessionOptions& options)
    : options_(options), process_(std::move(process)) {}

void Session::KillInto(const std::string& reason, CellResult* result) {
  if (process_ != nullptr) process_->Kill();
  process_.reset();
  result->termination = Termination::kSessionKilled;
  result->kill_reason = reason;
  result->state_lost = true;
}

std::string Session::DeathReason() {
  absl::StatusOr<int> status = process_->WaitExit(absl::Now() + absl::Seconds(2));
  if (!status.ok()) return "protocol";  // closed its pipe but lives on
  // bwrap exits with the driver's status, 128+N when a signal killed it.
  int code = WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
  if (code <= 128) return "exited";
  switch (code - 128) {
    case SIGXCPU:
      return "cpu_time";
    case SIGXFSZ:
      return "file_size";
    case SIGKILL:
      return "memory";  // the kernel's OOM killer or the CPU hard limit
    default:
      return "crashed";
  }
}

CellResult Session::Run(const CellRequest& request, ToolBridge* tools) {
  CellResult result;
  absl::Time start = absl::Now();
  if (process_ == nullptr) {
    result.termination = Termination::kSessionKilled;
    result.kill_reason = "exited";
    result.state_lost = true;
    return result;
  }
  nlohmann::json exec = {{"op", "exec"},
                         {"code", request.code},
                         {"max_output_bytes", request.max_output_bytes}};
  absl::Status st = process_->channel().Write(exec, absl::Now() + kWriteTimeout);
  if (!st.ok()) {
    KillInto(absl::IsDeadlineExceeded(st) ? "protocol" : DeathReason(), &result);
    return result;
  }
  absl::Time deadline = start + request.timeout;
  bool interrupted = false;
  while (true) {
    absl::StatusOr<nlohmann::json> frame = process_->channel().Read(deadline);
    if (absl::IsDeadlineExceeded(frame.status())) {
      if (interrupted) {
        KillInto("timeout", &result);
        break;
      }
      interrupted = true;
      if (!process_->SignalDriver(SIGINT).ok()) {
        KillInto("timeout", &result);
        break;
      }
      deadline = absl::Now() + options_.interrupt_grace;
      continue;
    }
    if (absl::IsUnavailable(frame.status())) {
      KillInto(DeathReason(), &result);
      break;
    }
    if (!frame.ok()) {
      LOG(WARNING) << "sandbox: killing a session that broke the protocol: "
                   << frame.status();
      KillInto("protocol", &result);
      break;
    }
    const std::string op = Str(*frame, "op");
    if (op == "tool") {
      ToolCallRecord record;
      nlohmann::json reply;
      if (tools == nullptr) {
        record.tool = Str(*frame, "tool");
        record.error = "no tools in this session";
        reply = {{"op", "tool_result"}, {"ok", false}, {"error", record.error}};
      } else {
        reply =
            tools->Serve(Str(*frame, "tool"), frame->value("args", nlohmann::json()),
                         deadline - absl::Now(), &record);
      }
      result.tool_calls.push_back(record);
      if (!process_->channel().Write(reply, absl::Now() + kWriteTimeout).ok()) {
        KillInto("protocol", &result);
        break;
      }
      continue;
    }
    if (op != "result" || !ParseResultFrame(*frame, &result).ok()) {
      KillInto("protocol", &result);
      break;
    }
    result.termination = interrupted ? Termination::kTimeout : Termination::kCompleted;
    break;
  }
  if (result.termination == Termination::kSessionKilled ||
      result.duration == absl::ZeroDuration()) {
    result.duration = absl::Now() - start;
  }
  return result;
}

}  // namespace nbrl::sandbox
