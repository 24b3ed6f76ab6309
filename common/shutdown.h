// Graceful shutdown on SIGINT and SIGTERM.
//
// Install() sets a handler for both signals that only writes the signal number to
// a pipe (async-signal-safe, and safe whichever thread the kernel picks, including
// threads libraries started before main), and starts a watcher thread that reads
// the pipe and does the rest.
//
// The first signal requests shutdown: requested() turns true, waiters wake, and the
// registered callbacks run (on a thread of their own) to stop accepting work. The
// process then has `grace` to finish or hand back what is in flight, flush and
// return; past it, or on a second signal, the process exits at once with status
// 128 + signal number and says so on stderr.
//
// Thread safety: every method is thread-safe. One instance per process.
#ifndef NBRL_COMMON_SHUTDOWN_H_
#define NBRL_COMMON_SHUTDOWN_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace nbrl::common {

class ShutdownSignal {
 public:
  // Default time allowed for a graceful stop after the first signal.
  static constexpr absl::Duration kDefaultGrace = absl::Seconds(30);

  // FailedPrecondition if an instance already exists.
  static absl::StatusOr<std::unique_ptr<ShutdownSignal>> Install(
      absl::Duration grace = kDefaultGrace);
  // Stops and joins the watcher and callback threads; restores the signal mask.
  ~ShutdownSignal();

  ShutdownSignal(const ShutdownSignal&) = delete;
  ShutdownSignal& operator=(const ShutdownSignal&) = delete;

  bool requested() const;
  // Why shutdown was requested ("SIGTERM", or the reason given to Request).
  std::string reason() const;
  // Waits up to `timeout`; returns requested().
  bool WaitFor(absl::Duration timeout) const;
  // Requests shutdown from inside the process (e.g. a fatal background error).
  void Request(const std::string& reason);
  // Runs `fn` once when shutdown is requested (at once if it already was).
  void OnShutdown(std::function<void()> fn);

 private:
  explicit ShutdownSignal(absl::Duration grace);
  void WatchLoop();
  void HardExit(const std::string& why, int status);

  // Constant after construction.
  const absl::Duration grace_;

  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  absl::Time requested_at_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
  bool callbacks_started_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<bool> stop_{false};
  int read_fd_ = -1;  // the self-pipe
  int write_fd_ = -1;
  std::thread watcher_;
  std::thread callback_runner_;  // started by the watcher, joined by ~ShutdownSignal
};

}  // namespace nbrl::common

#endif  // NBRL_COMMON_SHUTDOWN_H_
