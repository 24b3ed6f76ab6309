// Host-side tools a cell can call (web_search, read_page, ...). The Python stubs
// in the session send each call over the driver's control pipe; the worker serves
// it here, outside the sandbox, so no network or secret ever enters it.
//
// To add a tool: implement ToolBackend (see SearchIndex for the worked example),
// give the session a Python stub in repl_driver.py, and list it in tools().
#ifndef NBRL_SANDBOX_WORKER_TOOL_BRIDGE_H_
#define NBRL_SANDBOX_WORKER_TOOL_BRIDGE_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "sandbox_worker/cell.h"

namespace nbrl::sandbox {

struct SandboxMetrics;

// Serves tool calls. Thread-safe: one backend serves every session.
class ToolBackend {
 public:
  virtual ~ToolBackend() = default;
  // Names of the tools this backend serves.
  virtual std::vector<std::string> tools() const = 0;
  // Runs `tool` with `args` (a JSON object from the cell) within `timeout`.
  // InvalidArgument for bad arguments, NotFound for a missing document,
  // DeadlineExceeded when out of time; the message is shown to the agent.
  virtual absl::StatusOr<nlohmann::json> Call(const std::string& tool,
                                              const nlohmann::json& args,
                                              absl::Duration timeout) = 0;
};

struct ToolBridgeOptions {
  // Time limit of one call (also bounded by what is left of the cell's timeout).
  absl::Duration call_timeout = absl::Seconds(5);
  // Calls a session may make over its life; later calls fail with a quota error.
  int max_calls_per_session = 200;
};

// One session's view of the tools: which are enabled, its quota, the calls of the
// current cell. Not thread-safe (a session runs one cell at a time).
class ToolBridge {
 public:
  // `backend` may be null (no tools); it and `metrics` (nullable) must outlive this.
  ToolBridge(ToolBackend* backend, const ToolBridgeOptions& options,
             std::set<std::string> enabled, SandboxMetrics* metrics);

  // Serves one call and returns the reply frame for the driver
  // ({"op": "tool_result", "ok", "result" | "error"}); records it in `record`.
  nlohmann::json Serve(const std::string& tool, const nlohmann::json& args,
                       absl::Duration time_left, ToolCallRecord* record);

 private:
  ToolBackend* const backend_;
  const ToolBridgeOptions options_;
  const std::set<std::string> enabled_;
  SandboxMetrics* const metrics_;
  int calls_ = 0;
};

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_TOOL_BRIDGE_H_
