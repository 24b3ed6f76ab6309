// nbrl-sandbox-bench: the sandbox worker side by side with its two baselines.
//
//   (a) nbrl: SessionManager with a warm pool (bwrap + seccomp + rlimits + driver)
//   (b) fresh: a new `bwrap ... python3 -c CELL` process per cell, same namespaces
//   (c) jupyter: an ipykernel started inside bwrap (bench/jupyter_kernel_bench.py)
//
// Reports p50/p99 of session open + first `print(1)`, p50/p99 of a `pass` cell,
// and cells per second at several concurrencies; the open latency and per-cell
// figures of (a) vs (b) also go through bench/harness.h for its ratio line.
//
//   build/sandbox_worker/nbrl-sandbox-bench [--samples 40] [--cells 400]
//       [--seconds 2] [--concurrency 1,8,64] [--jupyter-concurrency 1,8]
//       [--no-jupyter] [--json FILE]
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/harness.h"
#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "sandbox_worker/session_manager.h"

extern char** environ;

namespace nbrl::sandbox {
namespace {

struct Flags {
  int samples = 40;
  int cells = 400;
  double seconds = 2;
  std::vector<int> concurrency = {1, 8, 64};
  std::string jupyter_concurrency = "1,8";
  bool jupyter = true;
  std::string json_path;
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

std::string Ms(double s) { return absl::StrFormat("%8.3f ms", s * 1e3); }

// (b): one fresh bwrap + python process running `code`, waited for.
absl::StatusOr<double> FreshProcessCell(const std::string& code) {
  std::vector<std::string> args = {"/usr/bin/bwrap",
                                   "--unshare-all",
                                   "--die-with-parent",
                                   "--new-session",
                                   "--clearenv",
                                   "--cap-drop",
                                   "ALL",
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
                                   "--tmpfs",
                                   "/tmp",
                                   "--tmpfs",
                                   "/workspace",
                                   "--chdir",
                                   "/workspace",
                                   "/usr/bin/python3",
                                   "-I",
                                   "-S",
                                   "-c",
                                   code};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  absl::Time t0 = absl::Now();
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return absl::UnavailableError("posix_spawn bwrap failed");
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError("fresh bwrap python failed");
  }
  return absl::ToDoubleSeconds(absl::Now() - t0);
}

// (a): open a session from the pool and run print(1) in it.
absl::StatusOr<double> OursOpenFirst(SessionManager& m, int warm) {
  m.WaitForWarm(warm, absl::Seconds(30));  // measure pool hits, as in steady state
  absl::Time t0 = absl::Now();
  absl::StatusOr<std::string> id = m.Open(OpenRequest{"bench", {}, {}, ""});
  if (!id.ok()) return id.status();
  absl::StatusOr<CellResult> r = m.Execute(*id, {"print(1)", absl::Seconds(10), 1024});
  double s = absl::ToDoubleSeconds(absl::Now() - t0);
  m.Close(*id);
  if (!r.ok()) return r.status();
  if (r->stdout_text != "1\n")
    return absl::InternalError("print(1) printed something else");
  return s;
}

// Runs `cell` in `n` threads for `seconds`; returns cells per second.
double Throughput(int n, double seconds, const std::function<bool(int)>& cell) {
  std::atomic<int64_t> done{0};
  absl::Time stop = absl::Now() + absl::Seconds(seconds);
  absl::Time t0 = absl::Now();
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      while (absl::Now() < stop) {
        if (!cell(i)) return;
        done.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return static_cast<double>(done.load()) / absl::ToDoubleSeconds(absl::Now() - t0);
}

absl::StatusOr<nlohmann::json> RunJupyter(const Flags& f) {
  const char* src = getenv("NBRL_SOURCE_DIR");
  std::string script = std::string(src ? src : ".") + "/bench/jupyter_kernel_bench.py";
  std::string cmd =
      absl::StrCat("/usr/bin/python3 ", script, " --samples ",
                   std::max(3, f.samples / 8), " --cells ", f.cells, " --seconds ",
                   f.seconds, " --concurrency ", f.jupyter_concurrency);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::UnavailableError("cannot run " + script);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  if (pclose(p) != 0) {
    return absl::UnavailableError(
        absl::StrCat(script,
                     " failed (its stderr is above); it needs python3-ipykernel and "
                     "python3-jupyter-client (deploy/setup.sh), or pass --no-jupyter"));
  }
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_object())
    return absl::DataLossError("jupyter bench printed no JSON: " + out);
  return j;
}

absl::Status Main(const Flags& f) {
  SessionManagerOptions o;
  int warm = std::min(8, f.samples);
  o.warm_sessions = warm;
  o.max_sessions = 256;
  o.launcher.max_processes = 256;
  auto created = SessionManager::Create(o, nullptr, nullptr);
  if (!created.ok()) return created.status();
  SessionManager& m = **created;
  nlohmann::json report;

  // Open + first cell, (a) vs (b), alternating through the harness.
  bench::SideBySideOptions so{.name = "sandbox_open_first_cell",
                              .rounds = f.samples,
                              .warmup = 2,
                              .unit = "s",
                              .higher_is_better = false,
                              .measured_label = "nbrl warm pool",
                              .baseline_label = "fresh bwrap python"};
  auto open = bench::RunSideBySide(
      so, [&] { return OursOpenFirst(m, warm); },
      [] { return FreshProcessCell("print(1)"); });
  if (!open.ok()) return open.status();
  std::cout << bench::FormatResult(*open) << "\n";

  // One `pass` cell in a live session vs a fresh process for it.
  auto id = m.Open(OpenRequest{"bench", {}, {}, ""});
  if (!id.ok()) return id.status();
  std::vector<double> ours_pass;
  for (int i = 0; i < f.cells; ++i) {
    absl::Time t0 = absl::Now();
    auto r = m.Execute(*id, {"pass", absl::Seconds(10), 1024});
    if (!r.ok()) return r.status();
    ours_pass.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  m.Close(*id);
  std::vector<double> fresh_pass;
  for (int i = 0; i < std::min(f.cells, 100); ++i) {
    auto s = FreshProcessCell("pass");
    if (!s.ok()) return s.status();
    fresh_pass.push_back(*s);
  }

  std::map<int, double> ours_rate, fresh_rate;
  for (int c : f.concurrency) {
    std::vector<std::string> ids;
    for (int i = 0; i < c; ++i) {
      auto s = m.Open(OpenRequest{"bench", {}, {}, ""});
      if (!s.ok()) return s.status();
      ids.push_back(*s);
    }
    ours_rate[c] = Throughput(c, f.seconds, [&](int i) {
      return m.Execute(ids[i], {"pass", absl::Seconds(10), 1024}).ok();
    });
    for (const std::string& s : ids) m.Close(s);
    fresh_rate[c] =
        Throughput(c, f.seconds, [](int) { return FreshProcessCell("pass").ok(); });
  }

  nlohmann::json jupyter;
  if (f.jupyter) {
    auto j = RunJupyter(f);
    if (!j.ok()) return j.status();
    jupyter = *j;
  }

  auto row = [](const std::string& what, const std::string& a, const std::string& b,
                const std::string& c) {
    std::cout << absl::StrFormat("%-34s %16s %20s %20s\n", what, a, b, c);
  };
  std::vector<double> ours_open = open->measured.values,
                      fresh_open = open->baseline.values;
  std::vector<double> jup_open, jup_pass;
  if (f.jupyter) {
    jup_open = jupyter["open_first_s"].get<std::vector<double>>();
    jup_pass = jupyter["pass_s"].get<std::vector<double>>();
  }
  std::string na = "n/a";
  row("", "(a) nbrl", "(b) fresh bwrap/cell", "(c) jupyter in bwrap");
  row("open + print(1) p50", Ms(Percentile(ours_open, .5)),
      Ms(Percentile(fresh_open, .5)), f.jupyter ? Ms(Percentile(jup_open, .5)) : na);
  row("open + print(1) p99", Ms(Percentile(ours_open, .99)),
      Ms(Percentile(fresh_open, .99)), f.jupyter ? Ms(Percentile(jup_open, .99)) : na);
  row("`pass` cell p50", Ms(Percentile(ours_pass, .5)), Ms(Percentile(fresh_pass, .5)),
      f.jupyter ? Ms(Percentile(jup_pass, .5)) : na);
  row("`pass` cell p99", Ms(Percentile(ours_pass, .99)),
      Ms(Percentile(fresh_pass, .99)), f.jupyter ? Ms(Percentile(jup_pass, .99)) : na);
  for (int c : f.concurrency) {
    std::string key = std::to_string(c);
    std::string jr =
        f.jupyter && jupyter["cells_per_s"].contains(key)
            ? absl::StrFormat("%.0f", jupyter["cells_per_s"][key].get<double>())
            : na;
    row(absl::StrCat("cells/s at ", c, " sessions"),
        absl::StrFormat("%.0f", ours_rate[c]), absl::StrFormat("%.0f", fresh_rate[c]),
        jr);
  }
  if (f.jupyter) {
    std::cout << absl::StrFormat("session start speed-up vs jupyter (p50): %.0fx\n",
                                 Percentile(jup_open, .5) / Percentile(ours_open, .5));
  }
  report["ours"] = {
      {"open_first_s", ours_open}, {"pass_s", ours_pass}, {"cells_per_s", ours_rate}};
  report["fresh"] = {{"open_first_s", fresh_open},
                     {"pass_s", fresh_pass},
                     {"cells_per_s", fresh_rate}};
  report["jupyter"] = jupyter;
  if (!f.json_path.empty()) {
    absl::Status st = common::WriteFileAtomically(f.json_path, report.dump(1));
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace nbrl::sandbox

int main(int argc, char** argv) {
  nbrl::sandbox::Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string v = i + 1 < argc ? argv[i + 1] : "";
    bool ok = true;
    if (a == "--samples") {
      ok = absl::SimpleAtoi(v, &f.samples) && f.samples > 0, ++i;
    } else if (a == "--cells") {
      ok = absl::SimpleAtoi(v, &f.cells) && f.cells > 0, ++i;
    } else if (a == "--seconds") {
      ok = absl::SimpleAtod(v, &f.seconds), ++i;
    } else if (a == "--concurrency") {
      f.concurrency.clear();
      for (absl::string_view s : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        int c = 0;
        ok = ok && absl::SimpleAtoi(s, &c) && c > 0;
        f.concurrency.push_back(c);
      }
      ++i;
    } else if (a == "--jupyter-concurrency") {
      f.jupyter_concurrency = v, ++i;
    } else if (a == "--no-jupyter") {
      f.jupyter = false;
    } else if (a == "--json") {
      f.json_path = v, ++i;
    } else {
      std::cerr
          << "usage: nbrl-sandbox-bench [--samples N] [--cells N] [--seconds S]\n"
             "  [--concurrency 1,8,64] [--jupyter-concurrency 1,8] [--no-jupyter]\n"
             "  [--json FILE]\n";
      return a == "--help" ? 0 : 2;
    }
    if (!ok) {
      std::cerr << "nbrl-sandbox-bench: bad value for " << a << "\n";
      return 2;
    }
  }
  absl::Status st = nbrl::sandbox::Main(f);
  if (!st.ok()) {
    std::cerr << "nbrl-sandbox-bench: " << st << "\n";
    return 1;
  }
  return 0;
}
