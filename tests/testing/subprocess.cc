#include "tests/testing/subprocess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace nbrl::testutil {

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::vector<std::string>& argv,
    const std::map<std::string, std::string>& env) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.push_back(*e);
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> cenv, cargv;
  for (auto& s : env_strings) cenv.push_back(s.data());
  cenv.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) cargv.push_back(s.data());
  cargv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    // Start with no signals blocked, whatever the test process has.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(cargv[0], cargv.data(), cenv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  std::unique_ptr<Subprocess> p(new Subprocess());
  p->pid_ = pid;
  p->out_fd_ = out[0];
  p->err_fd_ = err[0];
  return p;
}

Subprocess::~Subprocess() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

void Subprocess::Pump(absl::Duration timeout) {
  struct pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  int n = ::poll(fds, 2, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (n <= 0) return;
  char buf[65536];
  for (int i = 0; i < 2; ++i) {
    if (fds[i].revents == 0) continue;
    ssize_t r = ::read(fds[i].fd, buf, sizeof(buf));
    if (r > 0) {
      (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(r));
    } else if (r == 0) {
      ::close(fds[i].fd);
      (i == 0 ? out_fd_ : err_fd_) = -1;
    }
  }
}

absl::StatusOr<std::string> Subprocess::WaitForLine(const std::string& needle,
                                                    absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    size_t pos = out_.find(needle, scanned_);
    if (pos != std::string::npos) {
      size_t end = out_.find('\n', pos);
      if (end != std::string::npos) {
        size_t begin = out_.rfind('\n', pos);
        begin = begin == std::string::npos ? 0 : begin + 1;
        scanned_ = end + 1;
        return out_.substr(begin, end - begin);
      }
    }
    if (out_fd_ < 0 || absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no line with '", needle, "'; stdout:\n", out_, "\nstderr:\n", err_));
    }
    Pump(std::min(deadline - absl::Now(), absl::Milliseconds(100)));
  }
}

absl::Status Subprocess::Signal(int sig) {
  if (reaped_) return absl::FailedPreconditionError("process already exited");
  if (::kill(pid_, sig) != 0) {
    return absl::InternalError(absl::StrCat("kill: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "process ", pid_, " still running; stdout:\n", out_, "\nstderr:\n", err_));
    }
    if (out_fd_ >= 0 || err_fd_ >= 0) {
      Pump(absl::Milliseconds(20));
    } else {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  reaped_ = true;
  while (out_fd_ >= 0 || err_fd_ >= 0) Pump(absl::Seconds(1));
  return status;
}

absl::StatusOr<RunResult> RunCommand(const std::vector<std::string>& argv,
                                     absl::Duration timeout) {
  auto p = Subprocess::Start(argv);
  if (!p.ok()) return p.status();
  auto status = (*p)->Wait(timeout);
  if (!status.ok()) return status.status();
  RunResult r;
  r.exit_code = WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  r.out = (*p)->stdout_text();
  r.err = (*p)->stderr_text();
  return r;
}

absl::StatusOr<std::string> HttpGet(const std::string& host, int port,
                                    const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  struct timeval tv = {10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect ", host, ":", port, ": ", std::strerror(err)));
  }
  std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host,
                                     "\r\nConnection: close\r\n\r\n");
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    ::close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, n);
  ::close(fd);
  size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) {
    return absl::DataLossError(absl::StrCat("malformed HTTP reply: ", response));
  }
  std::string head = response.substr(0, body);
  if (!absl::StrContains(head.substr(0, head.find("\r\n")), " 200")) {
    return absl::UnavailableError(absl::StrCat("HTTP reply: ", head));
  }
  return response.substr(body + 4);
}

std::string BinaryPath(const std::string& relative) {
  const char* dir = std::getenv("NBRL_BINARY_DIR");
  return absl::StrCat(dir ? dir : ".", "/", relative);
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace nbrl::testutil
