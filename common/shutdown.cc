#include "common/shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

std::atomic<bool> g_installed{false};

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShutdownSignal>> ShutdownSignal::Install(
    absl::Duration grace) {
  if (g_installed.exchange(true)) {
    return absl::FailedPreconditionError("a ShutdownSignal is already installed");
  }
  // A peer that closes a socket must not kill us with SIGPIPE; writes report EPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::unique_ptr<ShutdownSignal> s(new ShutdownSignal(grace));
  s->watcher_ = std::thread([p = s.get()] { p->WatchLoop(); });
  return s;
}

ShutdownSignal::ShutdownSignal(absl::Duration grace) : grace_(grace) {}

ShutdownSignal::~ShutdownSignal() {
  stop_.store(true);
  if (watcher_.joinable()) watcher_.join();
  if (callback_runner_.joinable()) callback_runner_.join();
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
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
  std::string msg = absl::StrCat("nbrl: ", why, "; exiting now\n");
  ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
  (void)ignored;
  ::_exit(status);
}

void ShutdownSignal::WatchLoop() {
  sigset_t set = ShutdownSignals();
  const struct timespec tick = {0, 100 * 1000 * 1000};  // 100 ms
  while (!stop_.load()) {
    siginfo_t info;
    int sig = sigtimedwait(&set, &info, &tick);
    if (sig > 0) {
      bool again;
      {
        absl::MutexLock lock(&mu_);
        again = requested_;
      }
      if (again) {
        HardExit(absl::StrCat("second SIG", sigabbrev_np(sig), " during shutdown"),
                 128 + sig);
      }
      Request(absl::StrCat("SIG", sigabbrev_np(sig)));
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
