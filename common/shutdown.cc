#include "common/shutdown.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

std::atomic<bool> g_installed{false};
// Write end of the self-pipe the signal handler writes the signal number to.
std::atomic<int> g_signal_fd{-1};

// Async-signal-safe: one write(2) of one byte. Whichever thread the kernel picks
// runs it, so threads that libraries start before main() cannot be killed by the
// default action.
void OnSignal(int sig) {
  int fd = g_signal_fd.load();
  if (fd < 0) return;
  unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = ::write(fd, &b, 1);
  (void)ignored;
}

struct sigaction g_old_int, g_old_term;

}  // namespace

absl::StatusOr<std::unique_ptr<ShutdownSignal>> ShutdownSignal::Install(
    absl::Duration grace) {
  if (g_installed.exchange(true)) {
    return absl::FailedPreconditionError("a ShutdownSignal is already installed");
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    g_installed = false;
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  std::unique_ptr<ShutdownSignal> s(new ShutdownSignal(grace));
  s->read_fd_ = fds[0];
  s->write_fd_ = fds[1];
  g_signal_fd = fds[1];
  // A peer that closes a socket must not kill us with SIGPIPE; writes report EPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &g_old_int);
  ::sigaction(SIGTERM, &sa, &g_old_term);
  s->watcher_ = std::thread([p = s.get()] { p->WatchLoop(); });
  return s;
}

ShutdownSignal::ShutdownSignal(absl::Duration grace) : grace_(grace) {}

ShutdownSignal::~ShutdownSignal() {
  stop_.store(true);
  if (watcher_.joinable()) watcher_.join();
  if (callback_runner_.joinable()) callback_runner_.join();
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
  g_signal_fd = -1;
  ::close(read_fd_);
  ::close(write_fd_);
  g_installed.store(false);
}

bool ShutdownSignal::requested() const {
  absl::MutexLock lock(&mu_);
  return requested_;
}

std::string ShutdownSignal::reason() const {
  absl::MutexLock lock(&mu_);
  return reason_;
}

bool ShutdownSignal::WaitFor(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&requested_), timeout);
  return requested_;
}

void ShutdownSignal::Request(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (requested_) return;
  requested_ = true;
  reason_ = reason;
  requested_at_ = absl::Now();
  LOG(INFO) << "shutdown requested (" << reason << "); finishing in-flight work, "
            << "up to " << absl::FormatDuration(grace_);
}

void ShutdownSignal::OnShutdown(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!callbacks_started_) {
      callbacks_.push_back(std::move(fn));
      return;
    }
  }
  fn();  // too late for the runner thread: run it here
}

void ShutdownSignal::HardExit(const std::string& why, int status) {
  // Only the watcher calls this, and it owns callback_runner_. We exit without
  // joining the callbacks (they may be what is stuck); detached, the runner is not
  // a leaked thread to ThreadSanitizer's exit check.
  if (callback_runner_.joinable()) callback_runner_.detach();
  std::string msg = absl::StrCat("nbrl: ", why, "; exiting now\n");
  ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
  (void)ignored;
  ::_exit(status);
}

void ShutdownSignal::WatchLoop() {
  while (!stop_.load()) {
    struct pollfd pfd = {read_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, /*timeout_ms=*/100) > 0) {
      unsigned char sig = 0;
      while (::read(read_fd_, &sig, 1) == 1) {
        bool again;
        absl::Duration since;
        {
          absl::MutexLock lock(&mu_);
          again = requested_;
          since = absl::Now() - requested_at_;
        }
        // A cluster manager and a launcher often both send SIGTERM (scancel
        // signals every process of a step, then `nbrl launch` stops its children
        // in order): a second SIGTERM this soon is the same request, not an
        // operator insisting.
        if (again && sig == SIGTERM && since < absl::Seconds(3)) {
          LOG(INFO) << "second SIGTERM within " << absl::FormatDuration(since)
                    << " of the first: the same stop request, still shutting down "
                       "gracefully";
          continue;
        }
        if (again) {
          HardExit(absl::StrCat("second SIG", sigabbrev_np(sig), " during shutdown"),
                   128 + sig);
        }
        Request(absl::StrCat("SIG", sigabbrev_np(sig)));
      }
    }
    absl::MutexLock lock(&mu_);
    if (!requested_) continue;
    if (!callbacks_started_) {
      callbacks_started_ = true;
      callback_runner_ = std::thread([fns = std::move(callbacks_)] {
        for (const auto& fn : fns) fn();
      });
      callbacks_.clear();
    }
    if (absl::Now() - requested_at_ > grace_) {
      mu_.Unlock();
      HardExit(
          absl::StrCat("in-flight work did not finish within the shutdown grace of ",
                       absl::FormatDuration(grace_)),
          128 + SIGTERM);
    }
  }
}

}  // namespace nbrl::common
