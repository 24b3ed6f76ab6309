#include "cli/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"

namespace nbrl::cli {

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status))
    return absl::StrCat("exit status ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const char* name = sigabbrev_np(WTERMSIG(wait_status));
    return absl::StrCat("killed by SIG",
                        name ? name : std::to_string(WTERMSIG(wait_status)));
  }
  return absl::StrCat("wait status ", wait_status);
}

Supervisor::~Supervisor() {
  for (auto& [name, c] : children_) {
    if (c.pid > 0) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, nullptr, 0);
    }
  }
}

absl::Status Supervisor::Start(const ChildSpec& spec) {
  // A name may be used again once its child is gone for good (stopped, or done).
  if (auto it = children_.find(spec.name); it != children_.end()) {
    const Child& old = it->second;
    const bool restart_due = !old.stopping && old.restart_at != absl::InfiniteFuture();
    if (old.pid > 0 || restart_due) {
      return absl::AlreadyExistsError(absl::StrCat("child ", spec.name, " exists"));
    }
    children_.erase(it);
  }
  Child& c = children_[spec.name];
  c.spec = spec;
  c.backoff = absl::Seconds(1);
  return Spawn(c);
}

absl::Status Supervisor::Spawn(Child& c) {
  size_t slash = c.spec.log_path.rfind('/');
  if (slash != std::string::npos) {
    absl::Status st = common::MakeDirectories(c.spec.log_path.substr(0, slash));
    if (!st.ok()) return st;
  }
  int log =
      ::open(c.spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("cannot open ", c.spec.log_path));
  }
  std::vector<char*> argv;
  for (const std::string& a : c.spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(log);
    return common::ErrnoToStatus(err, absl::StrCat("cannot fork for ", c.spec.name));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the supervisor is already gone
    ::dup2(log, 1);
    ::dup2(log, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(argv[0], argv.data());
    const std::string msg =
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(errno), "\n");
    (void)!::write(2, msg.data(), msg.size());
    ::_exit(127);
  }
  ::close(log);
  if (!c.spec.pid_path.empty()) {
    (void)common::WriteFileAtomically(c.spec.pid_path, absl::StrCat(pid, "\n"));
  }
  c.pid = pid;
  c.started = absl::Now();
  c.restart_at = absl::InfiniteFuture();
  return absl::OkStatus();
}

std::vector<ChildExit> Supervisor::Reap() {
  std::vector<ChildExit> out;
  for (auto& [name, c] : children_) {
    if (c.pid <= 0) continue;
    int status = 0;
    pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r != c.pid) continue;
    c.pid = -1;
    ChildExit e;
    e.name = name;
    e.wait_status = status;
    const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (c.spec.restart && failed && !c.stopping) {
      if (absl::Now() - c.started > absl::Minutes(1)) c.backoff = absl::Seconds(1);
      e.restarting = true;
      e.delay = c.backoff;
      e.restarts = ++c.restarts;
      c.restart_at = absl::Now() + c.backoff;
      c.backoff = std::min(c.backoff * 2, max_backoff_);
    } else {
      e.restarts = c.restarts;
    }
    out.push_back(e);
  }
  return out;
}

std::vector<ChildExit> Supervisor::Poll() {
  std::vector<ChildExit> exits = Reap();
  for (auto& [name, c] : children_) {
    if (c.pid <= 0 && !c.stopping && absl::Now() >= c.restart_at) {
      absl::Status st = Spawn(c);
      if (!st.ok()) {
        c.restart_at = absl::Now() + c.backoff;  // try again later
      }
    }
  }
  return exits;
}

absl::StatusOr<std::string> Supervisor::WaitForLog(const std::string& name,
                                                   const std::string& needle,
                                                   absl::Duration timeout) {
  auto it = children_.find(name);
  if (it == children_.end())
    return absl::NotFoundError(absl::StrCat("no child ", name));
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<std::string> text = common::ReadFile(it->second.spec.log_path);
    if (text.ok()) {
      size_t at = text->find(needle);
      if (at != std::string::npos) {
        size_t begin = text->rfind('\n', at);
        begin = begin == std::string::npos ? 0 : begin + 1;
        size_t end = text->find('\n', at);
        return text->substr(begin,
                            end == std::string::npos ? std::string::npos : end - begin);
      }
    }
    for (const ChildExit& e : Reap()) {
      if (e.name == name) {
        return absl::FailedPreconditionError(
            absl::StrCat(name, " stopped (", DescribeWaitStatus(e.wait_status),
                         ") before it was ready; see ", it->second.spec.log_path));
      }
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(name, " was not ready within ", absl::FormatDuration(timeout),
                       "; see ", it->second.spec.log_path));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::vector<ChildExit> Supervisor::Stop(const std::vector<std::string>& names,
                                        absl::Duration grace) {
  for (const std::string& n : names) {
    auto it = children_.find(n);
    if (it == children_.end()) continue;
    it->second.stopping = true;
    if (it->second.pid > 0) ::kill(it->second.pid, SIGTERM);
  }
  std::vector<ChildExit> out;
  const absl::Time deadline = absl::Now() + grace;
  auto any_running = [&] {
    for (const std::string& n : names) {
      if (running(n)) return true;
    }
    return false;
  };
  while (any_running() && absl::Now() < deadline) {
    for (ChildExit& e : Reap()) out.push_back(e);
    absl::SleepFor(absl::Milliseconds(50));
  }
  for (const std::string& n : names) {
    auto it = children_.find(n);
    if (it != children_.end() && it->second.pid > 0) ::kill(it->second.pid, SIGKILL);
  }
  while (any_running()) {
    for (ChildExit& e : Reap()) out.push_back(e);
    absl::SleepFor(absl::Milliseconds(10));
  }
  return out;
}

bool Supervisor::running(const std::string& name) const {
  auto it = children_.find(name);
  return it != children_.end() && it->second.pid > 0;
}

pid_t Supervisor::pid(const std::string& name) const {
  auto it = children_.find(name);
  return it == children_.end() ? -1 : it->second.pid;
}

int Supervisor::restarts(const std::string& name) const {
  auto it = children_.find(name);
  return it == children_.end() ? 0 : it->second.restarts;
}

int Supervisor::total_restarts() const {
  int n = 0;
  for (const auto& [name, c] : children_) n += c.restarts;
  return n;
}

std::vector<std::string> Supervisor::names() const {
  std::vector<std::string> out;
  for (const auto& [name, c] : children_) out.push_back(name);
  return out;
}

}  // namespace nbrl::cli
