// Starts child processes and keeps them running: `nbrl launch`'s engine.
//
// Each child runs in its own process group (a terminal's Ctrl-C reaches only the
// supervisor, which then stops children in order), with stdout and stderr appended
// to its log file, and dies with the supervisor (PR_SET_PDEATHSIG). Poll() reaps
// exits and restarts children marked `restart` with exponential backoff (reset once
// a child has run for a minute).
//
// Not thread-safe: one thread drives a supervisor.
#ifndef NBRL_CLI_SUPERVISOR_H_
#define NBRL_CLI_SUPERVISOR_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbrl::cli {

struct ChildSpec {
  std::string name;               // e.g. "actor-1"
  std::vector<std::string> argv;  // argv[0] is a path
  std::string log_path;
  // When set, the child's pid is written there at each start (for operators).
  std::string pid_path;
  // Restart after a failure (a non-zero exit or a signal). A child that exits 0 is
  // done and stays down.
  bool restart = false;
};

struct ChildExit {
  std::string name;
  int wait_status = 0;
  bool restarting = false;  // a restart is scheduled
  absl::Duration delay;     // after this long
  int restarts = 0;         // of this child so far, including this one
};

// "exit status 3", "killed by SIGKILL".
std::string DescribeWaitStatus(int wait_status);

class Supervisor {
 public:
  explicit Supervisor(absl::Duration max_backoff = absl::Seconds(30))
      : max_backoff_(max_backoff) {}
  ~Supervisor();  // SIGKILLs what is still running

  // AlreadyExists while a child of that name runs or waits for its restart; a
  // stopped or finished child's name can be started again.
  absl::Status Start(const ChildSpec& spec);
  // Reaps exits and starts the restarts that are due; returns the exits seen.
  std::vector<ChildExit> Poll();
  // Waits until the child's log has a line containing `needle` (returns it), the
  // child exits (FailedPrecondition), or `timeout` (DeadlineExceeded).
  absl::StatusOr<std::string> WaitForLog(const std::string& name,
                                         const std::string& needle,
                                         absl::Duration timeout);
  // Sends SIGTERM to the named children (no restarts from now on for them), waits
  // up to `grace` for them to exit, then SIGKILLs the rest. Returns the exits.
  std::vector<ChildExit> Stop(const std::vector<std::string>& names,
                              absl::Duration grace);

  bool running(const std::string& name) const;
  pid_t pid(const std::string& name) const;
  int restarts(const std::string& name) const;
  int total_restarts() const;
  std::vector<std::string> names() const;

 private:
  struct Child {
    ChildSpec spec;
    pid_t pid = -1;
    absl::Time started;
    int restarts = 0;
    absl::Duration backoff;
    absl::Time restart_at = absl::InfiniteFuture();
    bool stopping = false;
  };
  absl::Status Spawn(Child& child);
  std::vector<ChildExit> Reap();

  absl::Duration max_backoff_;
  std::map<std::string, Child> children_;
};

}  // namespace nbrl::cli

#endif  // NBRL_CLI_SUPERVISOR_H_
