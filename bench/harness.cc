#include "bench/harness.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"

extern char** environ;

namespace nbrl::bench {

SideStats Summarize(std::vector<double> values) {
  SideStats s;
  s.values = values;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  s.median = n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
  s.min = values.front();
  s.max = values.back();
  return s;
}

absl::StatusOr<SideBySideResult> RunSideBySide(const SideBySideOptions& options,
                                               const Probe& measured,
                                               const Probe& baseline) {
  if (options.rounds < 1 || options.warmup < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "benchmark ", options.name, ": rounds must be >= 1 and warmup >= 0, got ",
        options.rounds, " and ", options.warmup));
  }
  std::vector<double> m_values, b_values;
  auto run = [&](bool is_measured, int round, bool record) -> absl::Status {
    absl::StatusOr<double> v = is_measured ? measured() : baseline();
    if (!v.ok()) {
      return absl::Status(
          v.status().code(),
          absl::StrCat("benchmark ", options.name, ", ",
                       is_measured ? options.measured_label : options.baseline_label,
                       record ? ", round " : ", warm-up round ", round + 1, ": ",
                       v.status().message()));
    }
    if (!std::isfinite(*v) || *v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("benchmark ", options.name, ": probe returned ", *v));
    }
    if (record) (is_measured ? m_values : b_values).push_back(*v);
    return absl::OkStatus();
  };
  for (int i = 0; i < options.warmup; ++i) {
    if (auto st = run(true, i, false); !st.ok()) return st;
    if (auto st = run(false, i, false); !st.ok()) return st;
  }
  for (int i = 0; i < options.rounds; ++i) {
    bool measured_first = i % 2 == 0;
    if (auto st = run(measured_first, i, true); !st.ok()) return st;
    if (auto st = run(!measured_first, i, true); !st.ok()) return st;
  }
  SideBySideResult r;
  r.options = options;
  r.measured = Summarize(m_values);
  r.baseline = Summarize(b_values);
  double num = options.higher_is_better ? r.measured.median : r.baseline.median;
  double den = options.higher_is_better ? r.baseline.median : r.measured.median;
  r.ratio = den > 0 ? num / den : std::numeric_limits<double>::infinity();
  return r;
}

namespace {
std::string FormatValue(double v, const std::string& unit) {
  if (unit == "s") {
    if (v < 1e-3) return absl::StrFormat("%.1f us", v * 1e6);
    if (v < 1) return absl::StrFormat("%.2f ms", v * 1e3);
    return absl::StrFormat("%.3f s", v);
  }
  return absl::StrFormat("%.4g %s", v, unit);
}
}  // namespace

std::string FormatResult(const SideBySideResult& r) {
  const auto& o = r.options;
  auto side = [&](const std::string& label, const SideStats& s) {
    return absl::StrFormat("  %-12s median %s  (min %s, max %s, %d rounds)\n", label,
                           FormatValue(s.median, o.unit), FormatValue(s.min, o.unit),
                           FormatValue(s.max, o.unit), s.values.size());
  };
  return absl::StrCat(
      o.name, ":\n", side(o.measured_label, r.measured),
      side(o.baseline_label, r.baseline),
      absl::StrFormat("  ratio %.2fx (%s vs %s; > 1 means %s is better)\n", r.ratio,
                      o.measured_label, o.baseline_label, o.measured_label));
}

std::string ResultJson(const SideBySideResult& r) {
  nlohmann::json j;
  j["name"] = r.options.name;
  j["unit"] = r.options.unit;
  j["higher_is_better"] = r.options.higher_is_better;
  j["rounds"] = r.options.rounds;
  j["warmup"] = r.options.warmup;
  auto side = [](const std::string& label, const SideStats& s) {
    return nlohmann::json{{"label", label},
                          {"values", s.values},
                          {"median", s.median},
                          {"min", s.min},
                          {"max", s.max}};
  };
  j["measured"] = side(r.options.measured_label, r.measured);
  j["baseline"] = side(r.options.baseline_label, r.baseline);
  j["ratio"] = r.ratio;
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  j["host"] = host;
  j["cpus"] = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  j["time_unix"] = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  return j.dump(2) + "\n";
}

absl::Status WriteResultJson(const SideBySideResult& result, const std::string& path) {
  return common::WriteFileAtomically(path, ResultJson(result));
}

Probe CommandProbe(const std::string& command) {
  return [command]() -> absl::StatusOr<double> {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    auto start = std::chrono::steady_clock::now();
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &actions, nullptr,
                         const_cast<char* const*>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    if (rc != 0) {
      ::close(pipe_fds[0]);
      return common::ErrnoToStatus(rc, absl::StrCat("cannot run '", command, "'"));
    }
    std::string output;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) != 0) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      output.append(buf, static_cast<size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::string tail =
          output.size() > 2000 ? output.substr(output.size() - 2000) : output;
      return absl::InternalError(
          absl::StrCat("'", command, "' failed (",
                       WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status))
                                         : absl::StrCat("signal ", WTERMSIG(status)),
                       "); output ends:\n", tail));
    }
    for (absl::string_view line : absl::StrSplit(output, '\n')) {
      if (absl::ConsumePrefix(&line, "NBRL_BENCH_VALUE=")) {
        double v;
        if (!absl::SimpleAtod(line, &v)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "'", command, "' printed NBRL_BENCH_VALUE=", line, ", not a number"));
        }
        return v;
      }
    }
    return seconds;
  };
}

}  // namespace nbrl::bench
