// Test helpers for real processes: start a binary with pipes, read its output with
// deadlines, signal it, wait for it; and a minimal HTTP GET for /metrics.
#ifndef NBRL_TESTS_TESTING_SUBPROCESS_H_
#define NBRL_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbrl::testutil {

// A child process with stdout and stderr on pipes. The destructor kills (SIGKILL)
// and reaps a child still running.
class Subprocess {
 public:
  // Starts argv[0] (a path) with argv; `env` entries are added to the environment.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv,
      const std::map<std::string, std::string>& env = {});
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // Reads stdout until a line containing `needle` arrives; returns that line.
  // DeadlineExceeded (with the output so far) when it does not come in time.
  absl::StatusOr<std::string> WaitForLine(const std::string& needle,
                                          absl::Duration timeout);
  absl::Status Signal(int sig);
  // Waits for exit; returns the raw wait status. DeadlineExceeded on timeout.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // Everything read so far (after Wait: everything).
  const std::string& stdout_text() const { return out_; }
  const std::string& stderr_text() const { return err_; }

 private:
  Subprocess() = default;
  // Reads whatever is available from both pipes for up to `timeout`.
  void Pump(absl::Duration timeout);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  std::string out_;
  std::string err_;
  size_t scanned_ = 0;  // stdout bytes already searched by WaitForLine
};

// Runs a command to completion; returns exit status, stdout and stderr.
struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};
absl::StatusOr<RunResult> RunCommand(const std::vector<std::string>& argv,
                                     absl::Duration timeout = absl::Seconds(60));

// GET http://host:port/path over a plain socket; returns the body of a 200 reply.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port,
                                    const std::string& path);

// A TCP port on the loopback interface that was free a moment ago (the OS picks
// it; it is released at once, so a server started next can bind it); -1 on error.
int FreePort();

// Path of a binary built by this project, from NBRL_BINARY_DIR (set by ctest).
std::string BinaryPath(const std::string& relative);

}  // namespace nbrl::testutil

#endif  // NBRL_TESTS_TESTING_SUBPROCESS_H_
