// How the agent reaches a sandbox: an interface, so that the episode loop knows
// nothing of gRPC. The gRPC client of nbrl-sandbox implements it; tests use an
// in-memory twin (tests/fake_sandbox.h).
#ifndef NBRL_AGENT_SANDBOX_CLIENT_H_
#define NBRL_AGENT_SANDBOX_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbrl::agent {

struct TodoItem {
  int id = 0;
  std::string text;
  std::string status;  // "pending", "in_progress", "done", "dropped"
};

struct NotepadState {
  std::vector<TodoItem> todos;
  std::vector<std::string> facts;
  std::string draft;
};

struct VariableSummary {
  std::string name, type, size, preview;
};

enum class CellEnd { kCompleted, kTimeout, kSessionKilled };

// What one cell produced (mirrors nbrl.v1.ExecuteResponse).
struct CellResult {
  std::string stdout_text;
  std::string stderr_text;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::string result;  // repr of the trailing expression, if any
  bool has_error = false;
  std::string error_name, error_message, traceback;
  CellEnd end = CellEnd::kCompleted;
  bool state_lost = false;
  std::string kill_reason;
  NotepadState notepad;
  bool has_final_answer = false;
  std::string final_answer;
  std::vector<VariableSummary> variables;
  int tool_calls = 0;
  absl::Duration duration;
};

// One sandboxed Python session. Not thread-safe: one cell at a time.
class SandboxSession {
 public:
  virtual ~SandboxSession() = default;
  // Runs a cell. A non-OK status means the sandbox itself failed (Unavailable,
  // DeadlineExceeded, ...); a cell that raised or timed out is an OK CellResult.
  virtual absl::StatusOr<CellResult> Execute(const std::string& code,
                                             absl::Duration timeout) = 0;
  // Ends the session; idempotent.
  virtual absl::Status Close() = 0;
};

struct SessionOptions {
  // Copied into the sandbox's logs (e.g. the episode id).
  std::string label;
  // Tools the session may call; empty: the sandbox's default set, unless no_tools.
  std::vector<std::string> tools;
  bool no_tools = false;
};

// Opens sessions. Thread-safe: episodes open sessions concurrently.
class SandboxClient {
 public:
  virtual ~SandboxClient() = default;
  virtual absl::StatusOr<std::unique_ptr<SandboxSession>> OpenSession(
      const SessionOptions& options) = 0;
};

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_SANDBOX_CLIENT_H_
