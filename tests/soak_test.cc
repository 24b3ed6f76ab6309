// Soak under `nbrl launch`: a tiny real run (1 learner, 3 actors, 2 sandbox
// workers) for NBRL_SOAK_SECONDS (600) with light chaos (a random actor or sandbox
// worker SIGKILLed every 30-90 s, seeded like chaos_test: NBRL_CHAOS_SEED). Every
// 5 s it samples each process's resident memory (/proc/<pid>/status VmRSS), open
// file descriptors (/proc/<pid>/fd) and child processes, and at the end prints one
// line per process: RSS at start and end and its growth per minute, fds at start
// and end, children, restarts. It fails when a process keeps growing:
//
//   - fds: an incarnation's last count above 2 x its first (after the warm-up) + 20;
//   - RSS: an incarnation's growth after the warm-up above
//     NBRL_SOAK_MAX_RSS_GROWTH_MB_PER_MIN (20). RSS first goes through a running
//     median of 7 samples (35 s), then "trend" is its Theil-Sen slope (the median
//     of the slopes between every two samples) and "growth" the smallest of the
//     trend and the slopes of the window's two halves. A leak grows in both halves;
//     the learner's swings of a few hundred MB from step to step, and a single
//     allocator high-water jump (an actor's longest context so far, tens of MB at
//     once) are not growth. Short soaks judge the learner coarsely: its RSS also
//     wanders over minutes;
//
// judged for every incarnation (process lifetime) that spans at least a minute
// after its warm-up (a third of the soak, at most 2 minutes). It also fails when the
// learner could not be judged (a soak shorter than ~90 s), when the run stops
// training, or when SIGTERM does not stop it cleanly. ctest label `long`:
// deploy/test.sh runs it only with NBRL_TEST_LONG=1. NBRL_SOAK_CSV=<file> writes
// every sample as CSV.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

using testutil::BinaryPath;
using testutil::Subprocess;

constexpr uint32_t kDefaultSeed = 20250917;

double EnvNumber(const char* name, double fallback) {
  const char* v = std::getenv(name);
  double x = fallback;
  if (v != nullptr && *v != '\0' && !absl::SimpleAtod(v, &x)) {
    ADD_FAILURE() << name << "='" << v << "' is not a number";
    return fallback;
  }
  return x;
}

pid_t Pid(const std::string& run_dir, const std::string& name) {
  auto text = common::ReadFile(run_dir + "/logs/" + name + ".pid");
  int pid = -1;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid))
    return -1;
  return pid;
}

// /proc/<pid>/stat fields after the command name: state, ppid, ...
std::vector<std::string> StatFields(pid_t pid) {
  auto stat = common::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return {};
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return {};
  return absl::StrSplit(stat->substr(paren + 2), ' ', absl::SkipEmpty());
}

// A live process (not a zombie) whose command line names `binary`.
bool AliveAs(pid_t pid, const std::string& binary) {
  if (pid <= 0) return false;
  std::vector<std::string> f = StatFields(pid);
  if (f.empty() || f[0] == "Z" || f[0] == "X") return false;
  auto cmdline = common::ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  return cmdline.ok() && absl::StrContains(*cmdline, binary);
}

double RssMb(pid_t pid) {
  auto status = common::ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    int64_t kb = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb)) return kb / 1024.0;
  }
  return -1;
}

int Fds(pid_t pid) {
  std::error_code ec;
  int n = 0;
  for (auto it =
           std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return ec ? -1 : n;
}

// Parent pid -> number of children, over every process on the machine.
std::map<pid_t, int> ChildCounts() {
  std::map<pid_t, int> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    int pid = 0;
    if (!absl::SimpleAtoi(it->path().filename().string(), &pid)) continue;
    std::vector<std::string> f = StatFields(pid);
    int ppid = 0;
    if (f.size() > 1 && absl::SimpleAtoi(f[1], &ppid)) ++out[ppid];
  }
  return out;
}

struct Sample {
  double t = 0;  // seconds since the soak began
  pid_t pid = -1;
  double rss_mb = 0;
  int fds = 0;
  int children = 0;
};

// Theil-Sen slope of RSS over time (the median of the pairwise slopes), in MB per
// minute, of samples [begin, end).
double TheilSenPerMinute(const std::vector<Sample>& s, size_t begin, size_t end) {
  std::vector<double> slopes;
  for (size_t i = begin; i < end; ++i) {
    for (size_t j = i + 1; j < end; ++j) {
      if (s[j].t > s[i].t) {
        slopes.push_back((s[j].rss_mb - s[i].rss_mb) / (s[j].t - s[i].t));
      }
    }
  }
  if (slopes.empty()) return 0;
  auto mid = slopes.begin() + static_cast<std::ptrdiff_t>(slopes.size() / 2);
  std::nth_element(slopes.begin(), mid, slopes.end());
  return 60.0 * *mid;
}

// RSS through a running median of `width` samples (the edges dropped): removes
// swings shorter than half the width, keeps steps and trends.
std::vector<Sample> MedianFiltered(const std::vector<Sample>& s, size_t width) {
  std::vector<Sample> out;
  for (size_t i = 0; i + width <= s.size(); ++i) {
    std::vector<double> w;
    for (size_t j = i; j < i + width; ++j) w.push_back(s[j].rss_mb);
    std::nth_element(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(width / 2),
                     w.end());
    out.push_back(s[i + width / 2]);
    out.back().rss_mb = w[width / 2];
  }
  return out;
}

struct Growth {
  double trend = 0;      // Theil-Sen slope of the whole window, MB/min
  double sustained = 0;  // the smallest of it and the slopes of the two halves
};

Growth RssGrowth(const std::vector<Sample>& settled) {
  const std::vector<Sample> s = MedianFiltered(settled, 7);
  const size_t half = s.size() / 2;
  Growth g;
  g.trend = TheilSenPerMinute(s, 0, s.size());
  g.sustained = std::min(
      {g.trend, TheilSenPerMinute(s, 0, half), TheilSenPerMinute(s, half, s.size())});
  return g;
}

class SoakTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    auto run = testutil::MakeTinyRun(dir_);
    ASSERT_TRUE(run.ok()) << run.status();
    run_dir_ = dir_ + "/run";
    config_ = dir_ + "/run.yaml";
    ASSERT_TRUE(
        common::WriteFileAtomically(
            config_,
            absl::StrCat("run:\n  dir: ", run_dir_, "\nmodel:\n  path: ", run->model,
                         "\nprocess:\n  shutdown_grace: 10s\n"
                         "sandbox:\n  tools:\n    index: ",
                         run->index,
                         "\nlearner:\n  batch_groups: 3\n"
                         "  lr: 0.001\n  max_staleness: 100\n"
                         "  checkpoint_every: 5\n  keep_checkpoints: 3\n"
                         "  max_steps: 0\n"
                         "actor:\n  data: ",
                         run->train,
                         "\n  group_size: 2\n  groups_per_batch: 1\n"
                         "  max_steps: 2\n  max_action_tokens: 32\n"
                         "  context_tokens: 2048\n"
                         "launch:\n  actors: 3\n  sandboxes: 2\n"
                         "  max_backoff: 2s\n"))
            .ok());
  }

  testutil::TempDir tmp_{"nbrl-soak"};
  std::string dir_, run_dir_, config_;
};

TEST_F(SoakTest, NoProcessLeaksMemoryOrFileDescriptors) {
  const double seconds = EnvNumber("NBRL_SOAK_SECONDS", 600);
  const double max_growth = EnvNumber("NBRL_SOAK_MAX_RSS_GROWTH_MB_PER_MIN", 20);
  const uint32_t seed =
      static_cast<uint32_t>(EnvNumber("NBRL_CHAOS_SEED", kDefaultSeed));
  const double warmup = std::min(120.0, seconds / 3);
  std::cout << absl::StrFormat(
                   "soak: %.0f s, warm-up %.0f s, RSS bound %.1f MB/min, chaos seed %u",
                   seconds, warmup, max_growth, seed)
            << std::endl;
  std::mt19937 rng(seed);
  auto uniform = [&rng](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };

  auto launch =
      Subprocess::Start({BinaryPath("cli/nbrl"), "launch", "--config", config_});
  ASSERT_TRUE(launch.ok()) << launch.status();
  Subprocess& launcher = **launch;
  ASSERT_TRUE(testutil::WaitForSteps(run_dir_, 1, absl::Seconds(180)))
      << launcher.stderr_text();

  // name -> binary its command line names; "launch" is the launcher itself.
  const std::vector<std::pair<std::string, std::string>> tracked = {
      {"launch", "nbrl"},           {"learner-0", "nbrl-learner"},
      {"actor-0", "nbrl-actor"},    {"actor-1", "nbrl-actor"},
      {"actor-2", "nbrl-actor"},    {"sandbox-0", "nbrl-sandbox"},
      {"sandbox-1", "nbrl-sandbox"}};
  const std::vector<std::string> victims = {"actor-0", "actor-1", "actor-2",
                                            "sandbox-0", "sandbox-1"};
  std::map<std::string, std::vector<Sample>> samples;
  std::map<std::string, int> kills;
  const absl::Time start = absl::Now();
  auto now_s = [&start] { return absl::ToDoubleSeconds(absl::Now() - start); };
  double next_kill = uniform(30, 90);
  int64_t steps_after_warmup = -1;
  while (now_s() < seconds) {
    const std::map<pid_t, int> children = ChildCounts();
    for (const auto& [name, binary] : tracked) {
      const pid_t pid = name == "launch" ? launcher.pid() : Pid(run_dir_, name);
      if (!AliveAs(pid, binary)) continue;
      Sample s;
      s.t = now_s();
      s.pid = pid;
      s.rss_mb = RssMb(pid);
      s.fds = Fds(pid);
      auto c = children.find(pid);
      s.children = c == children.end() ? 0 : c->second;
      if (s.rss_mb >= 0 && s.fds >= 0) samples[name].push_back(s);
    }
    if (steps_after_warmup < 0 && now_s() >= warmup) {
      steps_after_warmup = static_cast<int64_t>(testutil::StepRecords(run_dir_).size());
    }
    // Light chaos, none in the last 60 s so the final samples are of settled
    // processes.
    if (now_s() >= next_kill && now_s() < seconds - 60) {
      next_kill = now_s() + uniform(30, 90);
      const std::string& name =
          victims[uniform(0, static_cast<int>(victims.size()) - 1)];
      const pid_t pid = Pid(run_dir_, name);
      if (AliveAs(pid, name.substr(0, name.find('-')) == "actor" ? "nbrl-actor"
                                                                 : "nbrl-sandbox")) {
        std::cout << absl::StrFormat("soak +%.0fs: SIGKILL %s (pid %d)", now_s(), name,
                                     pid)
                  << std::endl;
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        ++kills[name];
      }
    }
    // Sleep ~5 s while reading the launcher's output.
    auto exited = launcher.Wait(absl::Seconds(5));
    ASSERT_FALSE(exited.ok()) << "the launcher exited during the soak:\n"
                              << launcher.stderr_text();
  }
  const int64_t steps_at_end =
      static_cast<int64_t>(testutil::StepRecords(run_dir_).size());

  ASSERT_TRUE(launcher.Signal(SIGTERM).ok());
  auto status = launcher.Wait(absl::Seconds(300));
  ASSERT_TRUE(status.ok()) << status.status();
  const std::string& err = launcher.stderr_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << err;
  EXPECT_TRUE(absl::StrContains(err, "stopped. Resume with")) << err;
  EXPECT_GT(steps_at_end, steps_after_warmup) << "the run stopped training";

  // Restarts by process, from the launcher's lines.
  std::map<std::string, int> restarts;
  for (absl::string_view line : absl::StrSplit(err, '\n')) {
    if (!absl::ConsumePrefix(&line, "nbrl launch: ") ||
        !absl::StrContains(line, "; restarting in")) {
      continue;
    }
    ++restarts[std::string(line.substr(0, line.find(' ')))];
  }

  std::ostringstream table;
  table << absl::StrFormat("%-10s %4s %8s %8s %8s %8s %8s %8s %5s %5s %s\n", "process",
                           "pids", "restarts", "RSS0 MB", "RSS1 MB", "max MB", "trend",
                           "growth", "fds0", "fds1", "children");
  std::vector<std::string> failures;
  for (const auto& [name, binary] : tracked) {
    const std::vector<Sample>& all = samples[name];
    if (all.empty()) {
      failures.push_back(name + ": never sampled");
      continue;
    }
    // Split into incarnations (one pid each), judge those long enough.
    std::map<pid_t, std::vector<Sample>> by_pid;
    std::vector<pid_t> order;
    for (const Sample& s : all) {
      if (!by_pid.count(s.pid)) order.push_back(s.pid);
      by_pid[s.pid].push_back(s);
    }
    Growth shown;
    bool judged = false;
    for (pid_t pid : order) {
      const std::vector<Sample>& inc = by_pid[pid];
      std::vector<Sample> settled;
      for (const Sample& s : inc) {
        if (s.t >= inc.front().t + warmup) settled.push_back(s);
      }
      if (settled.size() < 12 || settled.back().t - settled.front().t < 60) continue;
      const Growth g = RssGrowth(settled);
      if (!judged || g.sustained > shown.sustained) shown = g;
      judged = true;
      if (g.sustained > max_growth) {
        failures.push_back(absl::StrFormat(
            "%s (pid %d): RSS grows %.2f MB/min (trend %.2f) from %.1f to %.1f MB "
            "(bound %.1f)",
            name, pid, g.sustained, g.trend, settled.front().rss_mb,
            settled.back().rss_mb, max_growth));
      }
      if (settled.back().fds > 2 * settled.front().fds + 20) {
        failures.push_back(absl::StrFormat("%s (pid %d): fds grow from %d to %d", name,
                                           pid, settled.front().fds,
                                           settled.back().fds));
      }
    }
    if (name == "learner-0" && !judged) {
      failures.push_back(
          "learner-0: no incarnation long enough to judge (NBRL_SOAK_SECONDS >= 120)");
    }
    const int max_children = [&] {
      int m = 0;
      for (const Sample& s : all) m = std::max(m, s.children);
      return m;
    }();
    double max_rss = 0;
    for (const Sample& s : all) max_rss = std::max(max_rss, s.rss_mb);
    auto rate = [judged](double v) {
      return judged ? absl::StrFormat("%+.2f", v) : std::string("n/a");
    };
    table << absl::StrFormat(
        "%-10s %4d %8d %8.1f %8.1f %8.1f %8s %8s %5d %5d %d (max %d)\n", name,
        static_cast<int>(order.size()), restarts[name], all.front().rss_mb,
        all.back().rss_mb, max_rss, rate(shown.trend), rate(shown.sustained),
        all.front().fds, all.back().fds, all.back().children, max_children);
  }
  // NBRL_SOAK_CSV=<file>: every sample, for plotting.
  if (const char* csv = std::getenv("NBRL_SOAK_CSV"); csv != nullptr && *csv != '\0') {
    std::string text = "process,t_s,pid,rss_mb,fds,children\n";
    for (const auto& [name, list] : samples) {
      for (const Sample& s : list) {
        absl::StrAppendFormat(&text, "%s,%.1f,%d,%.2f,%d,%d\n", name, s.t, s.pid,
                              s.rss_mb, s.fds, s.children);
      }
    }
    EXPECT_TRUE(common::WriteFileAtomically(csv, text).ok()) << csv;
  }
  int total_kills = 0;
  for (const auto& [name, n] : kills) total_kills += n;
  std::cout << absl::StrFormat(
                   "soak: %.0f s, steps %d (%d after the warm-up), %d kills, %d "
                   "restarts\n",
                   seconds, steps_at_end,
                   steps_at_end - std::max<int64_t>(0, steps_after_warmup), total_kills,
                   [&] {
                     int n = 0;
                     for (const auto& [name, r] : restarts) n += r;
                     return n;
                   }())
            << "RSS0/fds0: first sample, RSS1/fds1: last; trend and growth (MB/min, "
               "after the warm-up, of the incarnation growing most; n/a: none long "
               "enough): see the top of soak_test.cc\n"
            << table.str() << std::flush;
  for (const std::string& f : failures) ADD_FAILURE() << f;
  // The launcher judged every process it was asked to restart.
  for (const auto& [name, n] : kills) {
    EXPECT_GE(restarts[name], n) << name << "\n" << err;
  }
}

}  // namespace
}  // namespace nbrl
