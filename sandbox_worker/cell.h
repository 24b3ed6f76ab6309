// Our own types for one code cell: what is asked and what comes back. The gRPC
// service converts them to and from nbrl.v1 messages; the CLI prints them as JSON.
#ifndef NBRL_SANDBOX_WORKER_CELL_H_
#define NBRL_SANDBOX_WORKER_CELL_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace nbrl::sandbox {

struct CellRequest {
  // Python source of the cell.
  std::string code;
  // Wall-clock limit of the cell, including the host-side tool calls it makes.
  absl::Duration timeout = absl::Seconds(30);
  // Budget for stdout and for stderr each, bytes; the result repr gets the same.
  size_t max_output_bytes = 16 << 10;
};

enum class Termination {
  kCompleted,      // ran to the end (possibly raising)
  kTimeout,        // interrupted at its timeout; the session lives
  kSessionKilled,  // the session had to be killed; its state is lost
};
const char* TerminationName(Termination t);

struct CellError {
  std::string name;       // exception class, e.g. "ZeroDivisionError"
  std::string message;    // str(exception)
  std::string traceback;  // trimmed to the user's code
};

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

struct VariableInfo {
  std::string name, type, size, preview;
};

struct ToolCallRecord {
  std::string tool;
  bool ok = false;
  absl::Duration latency;
  std::string error;
};

struct CellResult {
  std::string stdout_text;
  std::string stderr_text;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  // repr of the trailing expression; empty when there is none or it is None.
  std::string result;
  std::optional<CellError> error;
  Termination termination = Termination::kCompleted;
  // The session's earlier state is gone (it was killed by this cell or restarted
  // before it).
  bool state_lost = false;
  // Why the session was killed: "timeout", "cpu_time", "memory", "crashed",
  // "exited", "protocol". Empty unless kSessionKilled.
  std::string kill_reason;
  NotepadState notepad;
  std::optional<std::string> final_answer;
  std::vector<VariableInfo> variables;
  std::vector<ToolCallRecord> tool_calls;
  absl::Duration duration;
};

// The JSON observation printed by `nbrl-sandbox run`.
nlohmann::json CellResultToJson(const CellResult& r);

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_CELL_H_
