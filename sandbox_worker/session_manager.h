// The worker's sessions: a warm pool of pre-started sandboxes, the open sessions
// by id, and their reaping.
//
// Open takes a pre-started sandbox from the pool (no process start on the request
// path when the pool keeps up) and never reuses one: every session is a fresh
// process in fresh namespaces, killed when it is closed or idle too long. When a
// cell gets its session killed, the next Execute continues in a fresh sandbox and
// says state_lost. One maintenance thread starts every sandbox (so that
// --die-with-parent ties them to a thread that lives as long as the manager),
// keeps the pool filled and reaps idle sessions.
//
// Thread safety: thread-safe. Cells of one session run one at a time (a second
// concurrent Execute on the same session fails with FailedPrecondition); cells of
// different sessions run in parallel.
#ifndef NBRL_SANDBOX_WORKER_SESSION_MANAGER_H_
#define NBRL_SANDBOX_WORKER_SESSION_MANAGER_H_

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sandbox_worker/cell.h"
#include "sandbox_worker/launcher.h"
#include "sandbox_worker/sandbox_metrics.h"
#include "sandbox_worker/session.h"
#include "sandbox_worker/tool_bridge.h"

namespace nbrl::sandbox {

struct SessionManagerOptions {
  LauncherOptions launcher;
  SessionOptions session;
  ToolBridgeOptions tools;
  // Pre-started sandboxes kept ready.
  int warm_sessions = 4;
  // Open sessions accepted at once; more get ResourceExhausted.
  int max_sessions = 64;
  // A session without an Execute for this long is closed. A client may ask for
  // less or more, up to max_idle_timeout.
  absl::Duration idle_timeout = absl::Minutes(10);
  absl::Duration max_idle_timeout = absl::Hours(2);
  // Longest wait for a sandbox to start (an Open that finds the pool empty).
  absl::Duration start_timeout = absl::Seconds(10);
  // Cell limits: default and maximum wall time, default and maximum output
  // budget (bytes, for stdout and stderr each), and the largest cell source.
  absl::Duration cell_timeout = absl::Seconds(30);
  absl::Duration max_cell_timeout = absl::Minutes(10);
  size_t output_bytes = 16 << 10;
  size_t max_output_bytes = 1 << 20;
  size_t max_code_bytes = 1 << 20;
  // Tools of a session that asks for none; must be served by the backend.
  std::vector<std::string> default_tools = {"web_search", "read_page"};
};

struct OpenRequest {
  std::string client_id;
  // Zero: the worker's default.
  absl::Duration idle_timeout;
  // Empty: the default tools, unless no_tools.
  std::vector<std::string> tools;
  std::string label;
  bool no_tools = false;
};

class SessionManager {
 public:
  // Starts the launcher and the maintenance thread (which fills the pool in the
  // background). `tools` and `metrics` may be null and must outlive the manager.
  // FailedPrecondition when bwrap or python are missing, InvalidArgument for bad
  // options.
  static absl::StatusOr<std::unique_ptr<SessionManager>> Create(
      const SessionManagerOptions& options, ToolBackend* tools,
      SandboxMetrics* metrics);
  // Kills every session and joins the thread.
  ~SessionManager();

  // Opens a session; returns its id. Unavailable while draining or when no
  // sandbox can start, ResourceExhausted at capacity, InvalidArgument for a
  // malformed request (client_id over kMaxIdBytes or with a control character,
  // label over kMaxLabelBytes, more than kMaxTools tools, a negative idle
  // timeout, text that is not UTF-8) or a tool that is not served.
  absl::StatusOr<std::string> Open(const OpenRequest& request);
  // Runs a cell. NotFound for an unknown or closed session, InvalidArgument for a
  // bad request (malformed session id, code over max_code_bytes or not UTF-8,
  // negative timeout), FailedPrecondition when the session is running another cell,
  // Unavailable when its killed sandbox cannot be replaced. Zero timeout or
  // output budget: the defaults; larger ones are clamped to the maxima.
  absl::StatusOr<CellResult> Execute(const std::string& session_id,
                                     CellRequest request);
  // InvalidArgument unless `session_id` could name a session: 1 to kMaxIdBytes
  // bytes of UTF-8 without control characters. Whether it is open is another
  // matter.
  static absl::Status CheckSessionId(const std::string& session_id);
  // InvalidArgument unless `client_id` is 1 to kMaxIdBytes bytes of UTF-8 without
  // control characters.
  static absl::Status CheckClientId(const std::string& client_id);
  // Limits on what clients send: ids (client, session, tool names), labels, and
  // the number of tools one session asks for.
  static constexpr size_t kMaxIdBytes = 256;
  static constexpr size_t kMaxLabelBytes = 1024;
  static constexpr size_t kMaxTools = 64;
  // Closes a session; false when it was unknown or already closed.
  bool Close(const std::string& session_id);
  // Closes every session opened by `client_id`; returns how many.
  int CloseClient(const std::string& client_id);
  // Stops opening sessions (Health says DRAINING); open ones keep working.
  void Drain();
  // Blocks until the pool holds `n` warm sandboxes or `timeout` passes; true when
  // it does (tests and benchmarks use it to measure pool hits).
  bool WaitForWarm(int n, absl::Duration timeout);

  struct Stats {
    int active = 0;
    int warm = 0;
    int capacity = 0;
    bool draining = false;
  };
  Stats stats();
  const SessionManagerOptions& options() const { return options_; }

 private:
  struct Managed;

  SessionManager(const SessionManagerOptions& options,
                 std::unique_ptr<Launcher> launcher, ToolBackend* tools,
                 SandboxMetrics* metrics);
  void MaintenanceLoop();
  void ReapIdle();
  // Takes a warm sandbox, asking the maintenance thread for one and waiting when
  // the pool is empty.
  absl::StatusOr<std::unique_ptr<SandboxProcess>> TakeSandbox();
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const SessionManagerOptions options_;
  const std::unique_ptr<Launcher> launcher_;
  ToolBackend* const tools_;
  SandboxMetrics* const metrics_;
  std::vector<std::string> served_tools_;

  absl::Mutex mu_;
  std::deque<std::unique_ptr<SandboxProcess>> warm_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Managed>> sessions_ ABSL_GUARDED_BY(mu_);
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;           // TakeSandbox calls waiting
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);  // last failed start
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread maintenance_;  // joined by the destructor
};

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_SESSION_MANAGER_H_
