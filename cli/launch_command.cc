// `nbrl launch`: a whole single-node run from one YAML file. Starts
// `launch.sandboxes` sandbox workers, `learner.world_size` learner ranks and
// `launch.actors` actors, each with its rank, addresses and a log under
// <run.dir>/logs/, then supervises them:
//
//   - a crashed actor or sandbox worker is restarted with backoff and counted;
//   - a crashed learner stops the run, with the command that resumes it;
//   - Ctrl-C / SIGTERM stops actors (they flush), then learners (they write a
//     checkpoint), then sandboxes; a second signal kills everything at once;
//   - the run ends when the learners reach learner.max_steps.
//
// On a terminal a status line shows step, reward, throughput, actors alive and
// restarts; otherwise one line per step.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/supervisor.h"
#include "common/command_line.h"
#include "common/config.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "common/nbrl_config.h"
#include "common/process.h"
#include "prometheus/registry.h"

namespace nbrl::cli {
namespace {

std::atomic<int> g_signals{0};
void OnSignal(int) { g_signals.fetch_add(1); }

constexpr char kUsage[] =
    "nbrl launch: start and supervise a single-node run\n"
    "\n"
    "Usage: nbrl launch [--config FILE] [key=value ...]\n"
    "\n"
    "Starts launch.sandboxes nbrl-sandbox workers, learner.world_size nbrl-learner\n"
    "ranks and launch.actors nbrl-actor processes from one configuration (the same\n"
    "file and overrides go to every process), writes their logs to\n"
    "<run.dir>/logs/, restarts crashed actors and sandbox workers, and stops\n"
    "everything in order on Ctrl-C or SIGTERM (learners leave a checkpoint).\n"
    "Running the same command again resumes the run from its newest checkpoint.\n"
    "\n"
    "Keys of interest: run.dir, model.path, actor.data, learner.max_steps,\n"
    "launch.actors, launch.sandboxes, launch.bin_dir (see nbrl config --markdown).\n";

// A free TCP port on the loopback interface (the OS picks; released at once).
absl::StatusOr<int> FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return common::ErrnoToStatus(errno, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int err = errno;
    ::close(fd);
    return common::ErrnoToStatus(err, "cannot find a free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string BinDir(const common::Config& c) {
  std::string dir = c.GetString("launch.bin_dir");
  if (!dir.empty()) return dir;
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string self(buf, static_cast<size_t>(n));
  // build/cli/nbrl -> build/ (the build tree), or bin/nbrl -> bin/ (installed).
  std::string d = self.substr(0, self.rfind('/'));
  if (d.size() >= 4 && d.compare(d.size() - 4, 4, "/cli") == 0)
    return d.substr(0, d.size() - 4);
  return d;
}

std::string BinaryIn(const std::string& bin_dir, const std::string& subdir,
                     const std::string& name) {
  const std::string in_tree = absl::StrCat(bin_dir, "/", subdir, "/", name);
  return ::access(in_tree.c_str(), X_OK) == 0 ? in_tree
                                              : absl::StrCat(bin_dir, "/", name);
}

// The newest step record of learner rank 0, and the one before it.
struct Progress {
  nlohmann::json last, previous;
};
Progress ReadProgress(const std::string& run_dir) {
  Progress p;
  // Only the tail: the log grows by a line per step for the whole run, and this
  // runs every second. Two lines fit in it (a line lists its step's group ids).
  constexpr std::streamoff kTail = 256 << 10;
  std::ifstream in(run_dir + "/steps/rank-0.jsonl", std::ios::binary);
  if (!in) return p;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(std::max<std::streamoff>(0, size - kTail));
  const std::string text{std::istreambuf_iterator<char>(in),
                         std::istreambuf_iterator<char>()};
  size_t end = text.rfind('\n');
  for (int i = 0; i < 2 && end != std::string::npos && end > 0; ++i) {
    size_t begin = text.rfind('\n', end - 1);
    begin = begin == std::string::npos ? 0 : begin + 1;
    nlohmann::json j =
        nlohmann::json::parse(text.substr(begin, end - begin), nullptr, false);
    (i == 0 ? p.last : p.previous) = j.is_object() ? j : nlohmann::json();
    end = begin == 0 ? std::string::npos : begin - 1;
  }
  return p;
}

std::string StatusLine(const Progress& p, int actors_alive, int actors, int restarts) {
  std::string s = "step -";
  if (p.last.is_object()) {
    s = absl::StrFormat("step %d  reward %.3f  EM %.3f  loss %.4f",
                        p.last.value("step", 0), p.last.value("reward_mean", 0.0),
                        p.last.value("em_mean", 0.0), p.last.value("loss", 0.0));
    if (p.previous.is_object()) {
      const double dt = p.last.value("time", 0.0) - p.previous.value("time", 0.0);
      if (dt > 0) {
        absl::StrAppendFormat(&s, "  groups/s %.2f  tokens/s %.0f",
                              p.last["groups"].size() / dt,
                              p.last.value("tokens", 0) / dt);
      }
    }
  }
  absl::StrAppendFormat(&s, "  actors %d/%d  restarts %d", actors_alive, actors,
                        restarts);
  return s;
}

}  // namespace

int LaunchCommand(int argc, char** argv) {
  auto cl = common::ParseCommandLine(argc, argv, {});
  if (!cl.ok()) {
    std::cerr << "nbrl launch: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout << kUsage;
    return 0;
  }
  auto config =
      common::Config::Load(common::NbrlConfigSchema(), cl->config_path, cl->overrides);
  if (!config.ok()) {
    std::cerr << "nbrl launch: " << config.status().message() << "\n";
    return 2;
  }
  const common::Config& c = *config;
  for (const char* key : {"model.path", "actor.data"}) {
    if (c.GetString(key).empty()) {
      std::cerr << "nbrl launch: " << key
                << " is empty; set it in the config file or as " << key << "=...\n";
      return 2;
    }
  }
  const std::string run_dir = c.GetString("run.dir");
  const std::string bin = BinDir(c);
  const std::string sandbox_bin = BinaryIn(bin, "sandbox_worker", "nbrl-sandbox");
  const std::string learner_bin = BinaryIn(bin, "learner", "nbrl-learner");
  const std::string actor_bin = BinaryIn(bin, "actor", "nbrl-actor");
  for (const std::string& b : {sandbox_bin, learner_bin, actor_bin}) {
    if (::access(b.c_str(), X_OK) != 0) {
      std::cerr << "nbrl launch: cannot find " << b << " (set launch.bin_dir)\n";
      return 2;
    }
  }
  if (auto st = common::MakeDirectories(run_dir + "/logs"); !st.ok()) {
    std::cerr << "nbrl launch: " << st.message() << "\n";
    return 1;
  }
  const int sandboxes = static_cast<int>(c.GetInt("launch.sandboxes"));
  const int actors = static_cast<int>(c.GetInt("launch.actors"));
  const int ranks = static_cast<int>(c.GetInt("learner.world_size"));

  // Every child gets the same file and overrides, then its own.
  auto common_args = [&](const std::string& binary) {
    std::vector<std::string> a = {binary};
    if (!cl->config_path.empty()) {
      a.push_back("--config");
      a.push_back(cl->config_path);
    }
    for (const std::string& o : cl->overrides) a.push_back(o);
    // One metrics.port cannot serve several processes: each child picks a free
    // one and announces it in <run.dir>/prometheus/<name>.json.
    a.push_back("metrics.port=0");
    return a;
  };
  std::string resume = "nbrl launch";
  if (!cl->config_path.empty()) absl::StrAppend(&resume, " --config ", cl->config_path);
  for (const std::string& o : cl->overrides) absl::StrAppend(&resume, " ", o);

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  // The launcher's own metrics: processes running by role, restarts by process.
  auto registry = std::make_shared<prometheus::Registry>();
  common::AddProcessMetrics(*registry, "launch");
  common::MetricsOptions mo;
  mo.enabled = c.GetBool("metrics.enabled");
  mo.host = c.GetString("metrics.host");
  mo.port = static_cast<int>(c.GetInt("metrics.port"));
  auto metrics = common::MetricsServer::Start(mo, registry);
  if (!metrics.ok()) {
    std::cerr << "nbrl launch: " << metrics.status().message() << "\n";
    return 2;
  }
  const std::string target = run_dir + "/prometheus/launch-0.json";
  if ((*metrics)->port() != 0) {
    (void)common::WriteFileAtomically(
        target,
        common::PrometheusTarget((*metrics)->address(), "launch", 0, common::RunId(c)));
  }
  struct RemoveTarget {
    std::string path;
    ~RemoveTarget() { std::remove(path.c_str()); }
  } remove_target{target};
  auto& running_gauge = common::GaugeFamily(*registry, "nbrl_launch_processes",
                                            "Processes of the run that are running.");
  auto& restarts_counter =
      common::CounterFamily(*registry, "nbrl_launch_restarts_total",
                            "Restarts of crashed actors and sandbox workers.");
  auto& expected_gauge =
      common::GaugeFamily(*registry, "nbrl_launch_processes_expected",
                          "Processes the run should have running.");

  Supervisor sup(c.GetDuration("launch.max_backoff"));
  std::vector<std::string> sandbox_names, learner_names, actor_names;
  std::vector<std::string> sockets, learner_addresses;
  const bool tty = ::isatty(STDERR_FILENO);
  auto fail = [&](const std::string& message) {
    std::cerr << (tty ? "\n" : "") << "nbrl launch: " << message << "\n";
    sup.Stop(actor_names, absl::Seconds(30));
    sup.Stop(learner_names, absl::Seconds(60));
    sup.Stop(sandbox_names, absl::Seconds(10));
    return 1;
  };
  std::cerr << "nbrl launch: run " << run_dir << ": " << sandboxes
            << " sandbox workers, " << ranks << " learner ranks, " << actors
            << " actors; logs in " << run_dir << "/logs/\n";

  for (int i = 0; i < sandboxes; ++i) {
    ChildSpec s;
    s.name = absl::StrCat("sandbox-", i);
    sockets.push_back(absl::StrCat("unix:", run_dir, "/sandbox-", i, ".sock"));
    s.argv = common_args(sandbox_bin);
    s.argv.insert(s.argv.begin() + 1, "serve");
    s.argv.push_back(absl::StrCat("process.rank=", i));
    s.argv.push_back("sandbox.address=" + sockets.back());
    s.log_path = absl::StrCat(run_dir, "/logs/", s.name, ".log");
    s.pid_path = absl::StrCat(run_dir, "/logs/", s.name, ".pid");
    s.restart = true;
    if (auto st = sup.Start(s); !st.ok()) return fail(std::string(st.message()));
    sandbox_names.push_back(s.name);
  }
  for (const std::string& n : sandbox_names) {
    if (auto r = sup.WaitForLog(n, "ready", absl::Minutes(2)); !r.ok()) {
      return fail(std::string(r.status().message()));
    }
  }

  const std::string learner_host = [&] {
    std::string a = c.GetString("learner.address");
    return a.substr(0, a.rfind(':'));
  }();
  auto store_port = FreePort();
  if (!store_port.ok()) return fail(std::string(store_port.status().message()));
  for (int r = 0; r < ranks; ++r) {
    auto port = FreePort();
    if (!port.ok()) return fail(std::string(port.status().message()));
    learner_addresses.push_back(absl::StrCat(learner_host, ":", *port));
    ChildSpec s;
    s.name = absl::StrCat("learner-", r);
    s.argv = common_args(learner_bin);
    s.argv.push_back(absl::StrCat("process.rank=", r));
    s.argv.push_back("learner.address=" + learner_addresses.back());
    s.argv.push_back(absl::StrCat("learner.store_address=127.0.0.1:", *store_port));
    s.log_path = absl::StrCat(run_dir, "/logs/", s.name, ".log");
    s.pid_path = absl::StrCat(run_dir, "/logs/", s.name, ".pid");
    if (auto st = sup.Start(s); !st.ok()) return fail(std::string(st.message()));
    learner_names.push_back(s.name);
  }
  for (const std::string& n : learner_names) {
    if (auto r = sup.WaitForLog(n, "ready address=", absl::Minutes(5)); !r.ok()) {
      return fail(std::string(r.status().message()));
    }
  }
  for (int a = 0; a < actors; ++a) {
    ChildSpec s;
    s.name = absl::StrCat("actor-", a);
    s.argv = common_args(actor_bin);
    s.argv.push_back(absl::StrCat("process.rank=", a));
    s.argv.push_back(absl::StrCat("actor.shards=", actors));
    s.argv.push_back("actor.learner=" + learner_addresses[a % ranks]);
    s.argv.push_back("actor.sandbox=" + sockets[a % sandboxes]);
    s.log_path = absl::StrCat(run_dir, "/logs/", s.name, ".log");
    s.pid_path = absl::StrCat(run_dir, "/logs/", s.name, ".pid");
    s.restart = true;
    if (auto st = sup.Start(s); !st.ok()) return fail(std::string(st.message()));
    actor_names.push_back(s.name);
  }

  int64_t shown_step = -1;
  absl::Time next_status = absl::Now();
  while (true) {
    if (g_signals.load() > 0) {
      std::cerr << (tty ? "\n" : "")
                << "nbrl launch: stopping (actors, then learners, then sandboxes); "
                   "a second signal kills everything\n";
      // No restarts happen from here on, so these pids stay valid until reaped.
      std::vector<pid_t> pids;
      for (const std::string& n : sup.names()) {
        if (sup.pid(n) > 0) pids.push_back(sup.pid(n));
      }
      std::thread hard([pids] {
        while (g_signals.load() < 2) absl::SleepFor(absl::Milliseconds(50));
        for (pid_t p : pids) ::kill(p, SIGKILL);
      });
      hard.detach();
      sup.Stop(actor_names, c.GetDuration("process.shutdown_grace"));
      sup.Stop(learner_names,
               c.GetDuration("process.shutdown_grace") + absl::Seconds(30));
      sup.Stop(sandbox_names, absl::Seconds(10));
      std::cerr << "nbrl launch: stopped. Resume with: " << resume << "\n";
      return 0;
    }
    for (const ChildExit& e : sup.Poll()) {
      const bool is_learner = e.name.rfind("learner-", 0) == 0;
      if (is_learner && WIFEXITED(e.wait_status) && WEXITSTATUS(e.wait_status) == 0) {
        // The run is finished (learner.max_steps): the learners told the actors.
        std::cerr << (tty ? "\n" : "") << "nbrl launch: " << e.name << " finished\n";
        sup.Stop(learner_names, absl::Minutes(2));
        absl::Time deadline = absl::Now() + absl::Seconds(30);
        auto actors_running = [&] {
          for (const auto& n : actor_names) {
            if (sup.running(n)) return true;
          }
          return false;
        };
        while (actors_running() && absl::Now() < deadline) {
          sup.Poll();
          absl::SleepFor(absl::Milliseconds(100));
        }
        sup.Stop(actor_names, absl::Seconds(30));
        sup.Stop(sandbox_names, absl::Seconds(10));
        std::cerr << "nbrl launch: run finished: "
                  << StatusLine(ReadProgress(run_dir), 0, actors, sup.total_restarts())
                  << "\n";
        return 0;
      }
      if (is_learner) {
        return fail(absl::StrCat(e.name, " failed (", DescribeWaitStatus(e.wait_status),
                                 "); see ", run_dir, "/logs/", e.name,
                                 ".log. Resume with: ", resume));
      }
      if (e.restarting) {
        restarts_counter.Add({{"process", e.name}}).Increment();
        std::cerr << (tty ? "\n" : "") << "nbrl launch: " << e.name << " "
                  << DescribeWaitStatus(e.wait_status) << "; restarting in "
                  << absl::FormatDuration(e.delay) << " (restart " << e.restarts
                  << ")\n";
      }
    }
    if (absl::Now() >= next_status) {
      next_status = absl::Now() + absl::Seconds(1);
      for (const auto& [role, names] :
           {std::pair<std::string, const std::vector<std::string>*>{"actor",
                                                                    &actor_names},
            {"learner", &learner_names},
            {"sandbox", &sandbox_names}}) {
        int up = 0;
        for (const auto& n : *names) up += sup.running(n) ? 1 : 0;
        running_gauge.Add({{"role", role}}).Set(up);
        expected_gauge.Add({{"role", role}}).Set(static_cast<double>(names->size()));
      }
      Progress p = ReadProgress(run_dir);
      int alive = 0;
      for (const auto& n : actor_names) alive += sup.running(n) ? 1 : 0;
      const std::string line = StatusLine(p, alive, actors, sup.total_restarts());
      if (tty) {
        std::cerr << "\r\033[K" << line << std::flush;
      } else if (p.last.is_object() && p.last.value("step", int64_t{0}) != shown_step) {
        shown_step = p.last.value("step", int64_t{0});
        std::cerr << "nbrl launch: " << line << "\n";
      }
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

}  // namespace nbrl::cli
