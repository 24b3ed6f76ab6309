// One live REPL driver process and the cells it runs.
//
// Run() sends the cell, serves the tool calls it makes, and waits for its result
// until the cell's timeout; then it interrupts the cell (SIGINT to the driver,
// which raises KeyboardInterrupt in the cell) and waits `interrupt_grace` more. A
// cell that still does not return, a driver that dies (rlimits, crashes) or one
// that breaks the protocol gets the sandbox killed: the result says
// kSessionKilled with a kill_reason, and the Session is dead (alive() == false).
//
// Thread safety: not thread-safe; the SessionManager serializes calls per session.
#ifndef NBRL_SANDBOX_WORKER_SESSION_H_
#define NBRL_SANDBOX_WORKER_SESSION_H_

#include <memory>

#include "absl/time/time.h"
#include "sandbox_worker/cell.h"
#include "sandbox_worker/launcher.h"
#include "sandbox_worker/tool_bridge.h"

namespace nbrl::sandbox {

struct SessionOptions {
  // After interrupting a timed-out cell, how long it may take to return before
  // the session is killed.
  absl::Duration interrupt_grace = absl::Seconds(1);
};

class Session {
 public:
  Session(std::unique_ptr<SandboxProcess> process, const SessionOptions& options);

  // Runs one cell. Never fails: every outcome, including the death of the
  // session, is described in the CellResult. `tools` may be null (no tools).
  CellResult Run(const CellRequest& request, ToolBridge* tools);

  bool alive() const { return process_ != nullptr; }

 private:
  // Kills the sandbox and fills `result` as kSessionKilled for `reason`.
  void KillInto(const std::string& reason, CellResult* result);
  // Names why a driver that closed its pipe died, from its exit status.
  std::string DeathReason();

  const SessionOptions options_;
  std::unique_ptr<SandboxProcess> process_;
};

// Fills the fields of `result` carried by a driver's "result" frame. DataLoss
// when a field has the wrong type.
absl::Status ParseResultFrame(const nlohmann::json& frame, CellResult* result);

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_SESSION_H_
