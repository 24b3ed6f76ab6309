// Starts REPL driver processes inside bubblewrap.
//
// Each process gets: every namespace bwrap can unshare (user, pid, net, ipc, uts,
// cgroup, mount), --die-with-parent, --new-session, a cleared environment (bwrap
// itself is exec'd with a minimal one too, so not even the sandbox's pid 1 holds
// the worker's variables), read-only binds of /usr only (with the /bin, /lib,
// /lib64 symlinks of a merged-/usr system), a private /proc and minimal /dev, a
// size-capped tmpfs /tmp and a size-capped tmpfs /workspace (the cwd), the rest
// of the root read-only, no
// capabilities, the seccomp filter of seccomp_filter.h, and rlimits on address
// space, CPU time, processes, open files and file size. When the worker runs as
// root each sandbox runs under its own unprivileged uid, so RLIMIT_NPROC counts
// that session's processes only.
//
// Thread safety: Launcher is thread-safe. Note that --die-with-parent ties the
// sandbox to the *thread* that calls Launch (PR_SET_PDEATHSIG); call it from a
// thread that lives as long as the sessions (SessionManager uses one spawner).
#ifndef NBRL_SANDBOX_WORKER_LAUNCHER_H_
#define NBRL_SANDBOX_WORKER_LAUNCHER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sandbox_worker/frame_channel.h"

namespace nbrl::sandbox {

struct LauncherOptions {
  // The bubblewrap binary.
  std::string bwrap_path = "/usr/bin/bwrap";
  // Python inside the sandbox (must live under a read-only bind, i.e. /usr).
  std::string python_path = "/usr/bin/python3";
  // Size cap of the writable /workspace and /tmp tmpfs, bytes each.
  int64_t workspace_bytes = 64 << 20;
  int64_t tmp_bytes = 16 << 20;
  // RLIMIT_AS: address space of each process, bytes.
  int64_t address_space_bytes = int64_t{1} << 30;
  // RLIMIT_CPU: CPU time of each process over the session's life (soft limit:
  // SIGXCPU; the hard limit one second later kills).
  absl::Duration cpu_time = absl::Seconds(600);
  // RLIMIT_NPROC: processes and threads of the session's uid. Applied only when
  // the worker runs as root (then each sandbox has a uid of its own).
  int64_t max_processes = 64;
  // RLIMIT_NOFILE and RLIMIT_FSIZE (bytes).
  int64_t max_open_files = 256;
  int64_t max_file_bytes = 32 << 20;
  // When the worker runs as root: sandboxes run as uid/gid base + (n mod count),
  // n counting launches from a random start. Unused when not root (the sandbox keeps
  // the worker's uid).
  int64_t uid_base = 1'000'000;
  int64_t uid_count = 60'000;
  // Refuse dangerous syscalls (seccomp_filter.h). Off only for debugging.
  bool seccomp = true;
  // Where the sandbox's own stdout/stderr go (the driver's fds 1 and 2; a cell's
  // print() is captured in Python and never lands here). Empty: /dev/null.
  std::string log_path;
  // Largest protocol frame accepted from a driver.
  size_t max_frame_bytes = 16 << 20;
};

// One started sandbox: the bwrap process and the protocol channel to the driver
// inside. The destructor kills the whole sandbox and reaps it.
class SandboxProcess {
 public:
  SandboxProcess(pid_t bwrap_pid, std::unique_ptr<FrameChannel> channel);
  ~SandboxProcess();
  SandboxProcess(const SandboxProcess&) = delete;
  SandboxProcess& operator=(const SandboxProcess&) = delete;

  FrameChannel& channel() { return *channel_; }
  pid_t pid() const { return bwrap_pid_; }
  // Sends `sig` to the Python driver (found below bwrap's pid-1 reaper in the
  // process tree). NotFound when the driver is gone.
  absl::Status SignalDriver(int sig);
  // SIGKILLs the sandbox (its pid namespace dies with it) and reaps it.
  void Kill();
  // Reaps the sandbox if it exited by `deadline`; returns its wait status.
  // DeadlineExceeded when it still runs.
  absl::StatusOr<int> WaitExit(absl::Time deadline);

 private:
  const pid_t bwrap_pid_;
  std::unique_ptr<FrameChannel> channel_;
  pid_t driver_pid_ = -1;  // found on first SignalDriver
  bool reaped_ = false;
  int wait_status_ = 0;
};

class Launcher {
 public:
  // Compiles the seccomp filter and checks that bwrap and python exist.
  // FailedPrecondition naming the missing file.
  static absl::StatusOr<std::unique_ptr<Launcher>> Create(
      const LauncherOptions& options);
  ~Launcher();

  // Starts bwrap + driver and waits until the driver says it is ready (or
  // `deadline`). Unavailable when the sandbox fails to start (the message quotes
  // bwrap's error when log_path captures it), DeadlineExceeded when too slow.
  absl::StatusOr<std::unique_ptr<SandboxProcess>> Launch(absl::Time deadline);

  const LauncherOptions& options() const { return options_; }

 private:
  Launcher(const LauncherOptions& options, int seccomp_fd);
  std::vector<std::string> BwrapArgv(int seccomp_child_fd) const;

  const LauncherOptions options_;
  const int seccomp_fd_;  // -1 when seccomp is off
  // Counts launches; starts at a random offset so that two workers on one host
  // rarely hand out the same uids at the same time.
  std::atomic<int64_t> launches_{0};
};

// Exposed for tests: the source of repl_driver.py embedded at build time.
extern const char kReplDriverSource[];

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_LAUNCHER_H_
