#include "sandbox_worker/launcher.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "glog/logging.h"
#include "sandbox_worker/seccomp_filter.h"

namespace nbrl::sandbox {
namespace {

// Fds of the driver protocol inside the sandbox (see repl_driver.py).
constexpr int kRequestFd = 3;
constexpr int kReplyFd = 4;
constexpr int kSeccompFd = 5;

// Parent pid of `pid` and its start time (clock ticks), from /proc/PID/stat.
bool ReadStat(pid_t pid, pid_t* ppid, uint64_t* start) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  size_t close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return false;
  // After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt
  // majflt cmajflt utime stime cutime cstime priority nice threads itreal start.
  std::vector<std::string> f;
  size_t pos = close_paren + 2;
  while (pos < text.size() && f.size() < 20) {
    size_t sp = text.find(' ', pos);
    if (sp == std::string::npos) sp = text.size();
    f.push_back(text.substr(pos, sp - pos));
    pos = sp + 1;
  }
  int p = 0;
  return f.size() == 20 && absl::SimpleAtoi(f[1], &p) && (*ppid = p, true) &&
         absl::SimpleAtoi(f[19], start);
}

// The oldest child of `parent`, or -1.
pid_t OldestChild(pid_t parent) {
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return -1;
  pid_t best = -1;
  uint64_t best_start = UINT64_MAX;
  while (dirent* e = readdir(dir)) {
    int pid = 0;
    pid_t ppid = 0;
    uint64_t start = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    if (ReadStat(pid, &ppid, &start) && ppid == parent && start < best_start) {
      best = pid;
      best_start = start;
    }
  }
  closedir(dir);
  return best;
}

void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] { signal(SIGPIPE, SIG_IGN); });
}

// The end of a log file, for error messages.
std::string Tail(const std::string& path) {
  if (path.empty()) return "";
  auto text = common::ReadFile(path);
  if (!text.ok()) return "";
  return text->size() > 600 ? text->substr(text->size() - 600) : *text;
}

// Between fork and exec only async-signal-safe calls: raw syscalls, no allocation.
[[noreturn]] void ExecInChild(const std::vector<int>& fds, const rlimit* limits,
                              const int* resources, int nlimits, long uid,
                              char* const* argv, char* const* envp) {
  int moved[6];
  for (int i = 0; i < 6; ++i) moved[i] = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD, 16);
  for (int i = 0; i < 6; ++i) {
    if (moved[i] >= 0 && dup2(moved[i], i) < 0) _exit(126);
  }
  if (syscall(SYS_close_range, 6, ~0U, 0) != 0) {
    for (int fd = 6; fd < 4096; ++fd) close(fd);
  }
  // The worker blocks or ignores signals (shutdown handling, SIGPIPE); exec keeps
  // both, and the driver must get SIGINT.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  for (int i = 0; i < nlimits; ++i) setrlimit(resources[i], &limits[i]);
  if (uid >= 0) {
    if (syscall(SYS_setgroups, 0, nullptr) != 0 ||
        syscall(SYS_setresgid, uid, uid, uid) != 0 ||
        syscall(SYS_setresuid, uid, uid, uid) != 0) {
      _exit(125);
    }
  }
  execve(argv[0], argv, envp);
  _exit(127);
}

}  // namespace

SandboxProcess::SandboxProcess(pid_t bwrap_pid, std::unique_ptr<FrameChannel> channel)
    : bwrap_pid_(bwrap_pid), channel_(std::move(channel)) {}

SandboxProcess::~SandboxProcess() { Kill(); }

absl::Status SandboxProcess::SignalDriver(int sig) {
  if (driver_pid_ < 0 && !reaped_) {
    pid_t init = OldestChild(bwrap_pid_);
    if (init > 0) driver_pid_ = OldestChild(init);
  }
  if (driver_pid_ < 0 || reaped_)
    return absl::NotFoundError("REPL driver process not found");
  if (kill(driver_pid_, sig) != 0)
    return common::ErrnoToStatus(errno, "signal the REPL driver");
  return absl::OkStatus();
}

void SandboxProcess::Kill() {
  if (reaped_) return;
  if (driver_pid_ > 0) kill(driver_pid_, SIGKILL);
  kill(bwrap_pid_, SIGKILL);
  while (waitpid(bwrap_pid_, &wait_status_, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
}

absl::StatusOr<int> SandboxProcess::WaitExit(absl::Time deadline) {
  while (!reaped_) {
    pid_t r = waitpid(bwrap_pid_, &wait_status_, WNOHANG);
    if (r == bwrap_pid_ || (r < 0 && errno == ECHILD)) {
      reaped_ = true;
      break;
    }
    if (absl::Now() >= deadline)
      return absl::DeadlineExceededError("sandbox still running");
    absl::SleepFor(absl::Milliseconds(2));
  }
  return wait_status_;
}

Launcher::Launcher(const LauncherOptions& options, int seccomp_fd)
    : options_(options), seccomp_fd_(seccomp_fd) {}

Launcher::~Launcher() {
  if (seccomp_fd_ >= 0) close(seccomp_fd_);
}

absl::StatusOr<std::unique_ptr<Launcher>> Launcher::Create(
    const LauncherOptions& options) {
  for (const std::string& path : {options.bwrap_path, options.python_path}) {
    if (access(path.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sandbox: ", path, " is not an executable (", strerror(errno),
          "); install bubblewrap and python3 (deploy/setup.sh) or set sandbox.bwrap / "
          "sandbox.python"));
    }
  }
  if (options.python_path.rfind("/usr/", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox.python must live under /usr (the only tree bound into "
                     "the sandbox), got ",
                     options.python_path));
  }
  IgnoreSigpipeOnce();
  int fd = -1;
  if (options.seccomp) {
    absl::StatusOr<int> compiled = CompileSeccompFilter();
    if (!compiled.ok()) return compiled.status();
    fd = *compiled;
  }
  std::unique_ptr<Launcher> launcher(new Launcher(options, fd));
  launcher->launches_ = static_cast<int64_t>(std::random_device{}() % 1000000);
  return launcher;
}

std::vector<std::string> Launcher::BwrapArgv(int seccomp_child_fd) const {
  std::vector<std::string> a = {options_.bwrap_path,
                                "--unshare-all",
                                "--unshare-user",
                                "--disable-userns",
                                "--die-with-parent",
                                "--new-session",
                                "--clearenv",
                                "--cap-drop",
                                "ALL",
                                "--hostname",
                                "sandbox",
                                "--ro-bind",
                                "/usr",
                                "/usr",
                                "--symlink",
                                "usr/lib",
                                "/lib",
                                "--symlink",
                                "usr/lib64",
                                "/lib64",
                                "--symlink",
                                "usr/bin",
                                "/bin",
                                "--proc",
                                "/proc",
                                "--dev",
                                "/dev",
                                "--size",
                                absl::StrCat(options_.tmp_bytes),
                                "--tmpfs",
                                "/tmp",
                                "--size",
                                absl::StrCat(options_.workspace_bytes),
                                "--tmpfs",
                                "/workspace",
                                "--chdir",
                                "/workspace",
                                "--setenv",
                                "HOME",
                                "/workspace",
                                "--setenv",
                                "PATH",
                                "/usr/bin:/bin",
                                "--setenv",
                                "LANG",
                                "C.UTF-8",
                                "--setenv",
                                "PYTHONDONTWRITEBYTECODE",
                                "1",
                                "--remount-ro",
                                "/"};
  if (seccomp_child_fd >= 0) {
    a.insert(a.end(), {"--seccomp", absl::StrCat(kSeccompFd)});
  }
  a.insert(a.end(), {options_.python_path, "-I", "-S", "-u", "-c", kReplDriverSource});
  return a;
}

absl::StatusOr<std::unique_ptr<SandboxProcess>> Launcher::Launch(absl::Time deadline) {
  int req[2], rep[2];
  if (pipe2(req, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
  if (pipe2(rep, O_CLOEXEC) != 0) {
    close(req[0]);
    close(req[1]);
    return common::ErrnoToStatus(errno, "pipe");
  }
  int seccomp = -1;
  if (seccomp_fd_ >= 0) {
    // A new open file description per launch, so each bwrap reads from offset 0.
    seccomp =
        open(absl::StrCat("/proc/self/fd/", seccomp_fd_).c_str(), O_RDONLY | O_CLOEXEC);
  }
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  int log = options_.log_path.empty()
                ? devnull
                : open(options_.log_path.c_str(),
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  std::vector<int> fds = {devnull, log, log, req[0], rep[1], seccomp};

  std::vector<std::string> args = BwrapArgv(seccomp);
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::string env_path = "PATH=/usr/bin:/bin", env_lang = "LANG=C.UTF-8";
  char* envp[] = {env_path.data(), env_lang.data(), nullptr};
  // RLIMIT_NPROC goes last: without a uid of its own, the sandbox's RLIMIT_NPROC
  // would count every process of the worker's user (its threads, the other
  // sessions) and starve bwrap, so it is only set when the sandbox gets one.
  const int resources[] = {RLIMIT_AS,    RLIMIT_CPU,  RLIMIT_NOFILE,
                           RLIMIT_FSIZE, RLIMIT_CORE, RLIMIT_NPROC};
  const rlim_t cpu = static_cast<rlim_t>(absl::ToInt64Seconds(options_.cpu_time));
  auto both = [](int64_t v) {
    return rlimit{static_cast<rlim_t>(v), static_cast<rlim_t>(v)};
  };
  const rlimit limits[] = {
      both(options_.address_space_bytes), {cpu, cpu + 1}, both(options_.max_open_files),
      both(options_.max_file_bytes),      both(0),        both(options_.max_processes)};
  int64_t n = launches_.fetch_add(1);
  long uid = geteuid() == 0
                 ? static_cast<long>(options_.uid_base + n % options_.uid_count)
                 : -1;
  int nlimits = uid >= 0 ? 6 : 5;

  pid_t pid = fork();
  if (pid == 0) ExecInChild(fds, limits, resources, nlimits, uid, argv.data(), envp);
  int fork_errno = errno;
  for (int fd : {req[0], rep[1], seccomp, devnull}) {
    if (fd >= 0) close(fd);
  }
  if (log >= 0 && log != devnull) close(log);
  if (pid < 0) {
    close(req[1]);
    close(rep[0]);
    return common::ErrnoToStatus(fork_errno, "fork for bwrap");
  }
  fcntl(req[1], F_SETFL, O_NONBLOCK);
  fcntl(rep[0], F_SETFL, O_NONBLOCK);
  auto process = std::make_unique<SandboxProcess>(
      pid, std::make_unique<FrameChannel>(rep[0], req[1], options_.max_frame_bytes));
  absl::StatusOr<nlohmann::json> ready = process->channel().Read(deadline);
  if (!ready.ok() || ready->value("op", "") != "ready") {
    process->Kill();
    std::string why =
        ready.ok() ? "unexpected first frame" : std::string(ready.status().message());
    std::string msg = absl::StrCat("sandbox did not start: ", why);
    std::string tail = Tail(options_.log_path);
    if (!tail.empty()) absl::StrAppend(&msg, "; its output ends with: ", tail);
    if (!ready.ok() && absl::IsDeadlineExceeded(ready.status())) {
      return absl::DeadlineExceededError(msg);
    }
    return absl::UnavailableError(msg);
  }
  return process;
}

}  // namespace nbrl::sandbox
