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

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/supervisor.h"
#include "common/command_line.h"
#include "common/config.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "common/nbrl_config.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "prometheus/registry.h"

namespace nbrl::cli {
namespace {

std::atomic<int> g_signals{0};
void OnSignal(int) { g_signals.fetch_add(1); }

constexpr char kUsage[] =
    "nbrl launch: start and supervise the processes of a run on this node\n"
    "\n"
    "Usage: nbrl launch [--config FILE] [key=value ...]\n"
    "       nbrl launch [--config FILE] [key=value ...] --add-actors N\n"
    "\n"
    "Starts launch.sandboxes nbrl-sandbox workers, learner.world_size nbrl-learner\n"
    "ranks and launch.actors nbrl-actor processes from one configuration (the same\n"
    "file and overrides go to every process), writes their logs to\n"
    "<run.dir>/logs/, restarts crashed actors and sandbox workers, and stops\n"
    "everything in order on Ctrl-C or SIGTERM (learners leave a checkpoint).\n"
    "Running the same command again resumes the run from its newest checkpoint.\n"
    "\n"
    "--add-actors N (N may be negative) asks the launcher already running this\n"
    "run.dir and launch.node to start N more actors (or stop -N); the learner takes\n"
    "them in without a restart. It prints the new count once the launcher has it.\n"
    "\n"
    "Several nodes: one nbrl launch per node with launch.nodes, launch.node,\n"
    "launch.roles (learner on one node; sandbox and actor on every node),\n"
    "launch.learner_port and launch.learner_host (docs/deployment.md).\n"
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
    if (p.last.contains("staleness_mean")) {
      absl::StrAppendFormat(&s, "  staleness %.1f",
                            p.last.value("staleness_mean", 0.0));
    }
  }
  absl::StrAppendFormat(&s, "  actors %d/%d  restarts %d", actors_alive, actors,
                        restarts);
  return s;
}

// Where a node's launcher says who it is and how many actors it runs, and where
// `--add-actors` asks it for another count.
std::string StatePath(const std::string& run_dir, int node) {
  return absl::StrCat(run_dir, "/logs/launch-", node, ".state");
}
std::string ScalePath(const std::string& run_dir, int node) {
  return absl::StrCat(run_dir, "/logs/launch-", node, ".scale");
}

// The running launcher's pid and actor count, from its state file.
absl::StatusOr<std::pair<pid_t, int>> ReadState(const std::string& path) {
  auto text = common::ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("pid") || !j.contains("actors")) {
    return absl::DataLossError(absl::StrCat(path, " is not a launcher state file"));
  }
  return std::make_pair(j["pid"].get<pid_t>(), j["actors"].get<int>());
}

// `nbrl launch --add-actors N`: asks the running launcher for N more (or fewer)
// actors and waits until it runs that many.
int AddActors(const common::Config& c, int delta) {
  const std::string run_dir = c.GetString("run.dir");
  const int node = static_cast<int>(c.GetInt("launch.node"));
  const std::string state_path = StatePath(run_dir, node);
  auto state = ReadState(state_path);
  if (!state.ok() || ::kill(state->first, 0) != 0) {
    std::cerr << "nbrl launch: no launcher is running for run.dir " << run_dir
              << " node " << node << " ("
              << (state.ok() ? absl::StrCat("pid ", state->first, " is gone")
                             : std::string(state.status().message()))
              << "); start the run first\n";
    return 1;
  }
  if (auto j = nlohmann::json::parse(common::ReadFile(state_path).value_or(""), nullptr,
                                     false);
      j.is_object() && !j.value("runs_actors", true)) {
    std::cerr << "nbrl launch: node " << node << " of " << run_dir
              << " runs no actors (launch.roles); scale a node that does\n";
    return 2;
  }
  const int want = state->second + delta;
  if (want < 0) {
    std::cerr << "nbrl launch: cannot remove " << -delta << " actors: node " << node
              << " runs " << state->second << "\n";
    return 2;
  }
  if (auto st = common::WriteFileAtomically(ScalePath(run_dir, node),
                                            absl::StrCat(want, "\n"));
      !st.ok()) {
    std::cerr << "nbrl launch: " << st.message() << "\n";
    return 1;
  }
  // Stopping actors waits for them to flush their groups (process.shutdown_grace).
  const absl::Time deadline =
      absl::Now() + c.GetDuration("process.shutdown_grace") + absl::Minutes(1);
  while (absl::Now() < deadline) {
    auto now = ReadState(state_path);
    if (now.ok() && now->second == want) {
      std::cout << "nbrl launch: node " << node << " actors " << state->second << " -> "
                << want << "\n";
      return 0;
    }
    if (now.ok() && ::kill(now->first, 0) != 0) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  std::cerr << "nbrl launch: the launcher (pid " << state->first << ") did not confirm "
            << want << " actors; see its output\n";
  return 1;
}

}  // namespace

int LaunchCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.value_flags = {"--add-actors"};
  auto cl = common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl launch: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout << kUsage;
    return 0;
  }
  std::optional<int> add_actors;
  for (const std::string& w : cl->positional) {
    int n = 0;
    if (w.rfind("--add-actors=", 0) != 0 ||
        !absl::SimpleAtoi(w.substr(sizeof("--add-actors=") - 1), &n) || n == 0) {
      std::cerr << "nbrl launch: --add-actors needs a non-zero whole number, got '" << w
                << "'\n";
      return 2;
    }
    add_actors = n;
  }
  auto config =
      common::Config::Load(common::NbrlConfigSchema(), cl->config_path, cl->overrides);
  if (!config.ok()) {
    std::cerr << "nbrl launch: " << config.status().message() << "\n";
    return 2;
  }
  const common::Config& c = *config;
  if (add_actors) return AddActors(c, *add_actors);

  bool run_sandbox = false, run_learner = false, run_actor = false;
  for (const std::string& role : c.GetStringList("launch.roles")) {
    if (role == "sandbox") {
      run_sandbox = true;
    } else if (role == "learner") {
      run_learner = true;
    } else if (role == "actor") {
      run_actor = true;
    } else {
      std::cerr << "nbrl launch: launch.roles: unknown role '" << role
                << "' (expected sandbox, learner or actor)\n";
      return 2;
    }
  }
  if (!run_sandbox && !run_learner && !run_actor) {
    std::cerr << "nbrl launch: launch.roles is empty; name sandbox, learner or actor\n";
    return 2;
  }
  if (run_actor && !run_sandbox) {
    std::cerr << "nbrl launch: launch.roles has actor without sandbox; actors use a "
                 "sandbox worker on their own node\n";
    return 2;
  }
  const int nodes = static_cast<int>(c.GetInt("launch.nodes"));
  const int node = static_cast<int>(c.GetInt("launch.node"));
  const int learner_port = static_cast<int>(c.GetInt("launch.learner_port"));
  if (node >= nodes) {
    std::cerr << "nbrl launch: launch.node is " << node << " but launch.nodes is "
              << nodes << " (nodes count from 0)\n";
    return 2;
  }
  if (learner_port == 0 && (nodes > 1 || !run_learner) && run_actor) {
    std::cerr << "nbrl launch: actors on a node without the learner need "
                 "launch.learner_port (and launch.learner_host)\n";
    return 2;
  }
  std::vector<const char*> required = {"model.path"};
  if (run_actor) required.push_back("actor.data");
  for (const char* key : required) {
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
  for (const auto& [b, needed] :
       {std::pair<std::string, bool>{sandbox_bin, run_sandbox},
        {learner_bin, run_learner},
        {actor_bin, run_actor}}) {
    if (needed && ::access(b.c_str(), X_OK) != 0) {
      std::cerr << "nbrl launch: cannot find " << b << " (set launch.bin_dir)\n";
      return 2;
    }
  }
  if (auto st = common::MakeDirectories(run_dir + "/logs"); !st.ok()) {
    std::cerr << "nbrl launch: " << st.message() << "\n";
    return 1;
  }
  if (auto state = ReadState(StatePath(run_dir, node));
      state.ok() && state->first != ::getpid() && ::kill(state->first, 0) == 0) {
    std::cerr << "nbrl launch: another launcher (pid " << state->first << ") runs node "
              << node << " of " << run_dir
              << "; use --add-actors to scale it, or stop it first\n";
    return 2;
  }
  const int sandboxes =
      run_sandbox ? static_cast<int>(c.GetInt("launch.sandboxes")) : 0;
  const int actors_per_node = static_cast<int>(c.GetInt("launch.actors"));
  const int ranks = static_cast<int>(c.GetInt("learner.world_size"));
  const int shards = nodes * actors_per_node;
  // Local actor slot -> global actor index: the first launch.actors slots of each
  // node are contiguous; slots added later interleave across nodes past them.
  auto global_actor = [&](int slot) {
    return slot < actors_per_node ? node * actors_per_node + slot
                                  : shards + (slot - actors_per_node) * nodes + node;
  };

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
  if (nodes > 1) {
    resume = absl::StrCat("starting the launchers of all ", nodes,
                          " nodes again, as they were started (with Slurm: submit the "
                          "job again; with ssh-launch: its command again); this node's "
                          "was: ",
                          resume);
  }

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
  const std::string target =
      absl::StrCat(run_dir, "/prometheus/launch-", node, ".json");
  if ((*metrics)->port() != 0) {
    (void)common::WriteFileAtomically(
        target, common::PrometheusTarget((*metrics)->address(), "launch", node,
                                         common::RunId(c)));
  }
  struct RemoveFiles {
    std::vector<std::string> paths;
    ~RemoveFiles() {
      for (const std::string& p : paths) std::remove(p.c_str());
    }
  } remove_files{{target, StatePath(run_dir, node), ScalePath(run_dir, node)}};
  std::remove(ScalePath(run_dir, node).c_str());  // a request left by an old run
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
  auto write_state = [&] {
    nlohmann::json j = {{"pid", ::getpid()},
                        {"node", node},
                        {"runs_actors", run_actor},
                        {"actors", actor_names.size()},
                        {"actor_names", actor_names}};
    (void)common::WriteFileAtomically(StatePath(run_dir, node), j.dump() + "\n");
  };
  write_state();
  std::cerr << "nbrl launch: run " << run_dir;
  if (nodes > 1) std::cerr << " node " << node << "/" << nodes;
  std::cerr << ": " << sandboxes << " sandbox workers, " << (run_learner ? ranks : 0)
            << " learner ranks, " << (run_actor ? actors_per_node : 0)
            << " actors; logs in " << run_dir << "/logs/\n";

  for (int i = 0; i < sandboxes; ++i) {
    const int index = node * sandboxes + i;
    ChildSpec s;
    s.name = absl::StrCat("sandbox-", index);
    sockets.push_back(absl::StrCat("unix:", run_dir, "/sandbox-", index, ".sock"));
    s.argv = common_args(sandbox_bin);
    s.argv.insert(s.argv.begin() + 1, "serve");
    s.argv.push_back(absl::StrCat("process.rank=", index));
    s.argv.push_back("sandbox.address=" + sockets.back());
    s.log_path = absl::StrCat(run_dir, "/logs/", s.name, ".log");
    s.pid_path = absl::StrCat(run_dir, "/logs/", s.name, ".pid");
    s.restart = true;
    if (auto st = sup.Start(s); !st.ok()) return fail(std::string(st.message()));
    restarts_counter.Add({{"process", s.name}});  // at 0 until it restarts
    sandbox_names.push_back(s.name);
  }
  for (const std::string& n : sandbox_names) {
    if (auto r = sup.WaitForLog(n, "ready", absl::Minutes(2)); !r.ok()) {
      return fail(std::string(r.status().message()));
    }
  }

  // Learner addresses: where ranks listen, and where actors reach them.
  const std::string bind_host = [&] {
    std::string a = c.GetString("learner.address");
    return a.substr(0, a.rfind(':'));
  }();
  const std::string connect_host = c.GetString("launch.learner_host").empty()
                                       ? bind_host
                                       : c.GetString("launch.learner_host");
  std::vector<std::string> actor_targets;  // by learner rank
  if (learner_port != 0) {
    for (int r = 0; r < ranks; ++r) {
      actor_targets.push_back(absl::StrCat(connect_host, ":", learner_port + r));
    }
  }
  if (run_learner) {
    std::string store = c.GetString("learner.store_address");
    if (learner_port == 0) {
      auto store_port = FreePort();
      if (!store_port.ok()) return fail(std::string(store_port.status().message()));
      store = absl::StrCat("127.0.0.1:", *store_port);
    }
    for (int r = 0; r < ranks; ++r) {
      int port = learner_port + r;
      if (learner_port == 0) {
        auto free = FreePort();
        if (!free.ok()) return fail(std::string(free.status().message()));
        port = *free;
        actor_targets.push_back(absl::StrCat(connect_host, ":", port));
      }
      learner_addresses.push_back(absl::StrCat(bind_host, ":", port));
      ChildSpec s;
      s.name = absl::StrCat("learner-", r);
      s.argv = common_args(learner_bin);
      s.argv.push_back(absl::StrCat("process.rank=", r));
      s.argv.push_back("learner.address=" + learner_addresses.back());
      s.argv.push_back("learner.store_address=" + store);
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
  }
  auto start_actor = [&](int slot) -> absl::Status {
    const int a = global_actor(slot);
    ChildSpec s;
    s.name = absl::StrCat("actor-", a);
    s.argv = common_args(actor_bin);
    s.argv.push_back(absl::StrCat("process.rank=", a));
    s.argv.push_back(absl::StrCat("actor.shards=", shards));
    s.argv.push_back("actor.learner=" + actor_targets[a % ranks]);
    s.argv.push_back("actor.sandbox=" + sockets[slot % sandboxes]);
    s.log_path = absl::StrCat(run_dir, "/logs/", s.name, ".log");
    s.pid_path = absl::StrCat(run_dir, "/logs/", s.name, ".pid");
    s.restart = true;
    RETURN_IF_ERROR(sup.Start(s));
    restarts_counter.Add({{"process", s.name}});  // at 0 until it restarts
    actor_names.push_back(s.name);
    return absl::OkStatus();
  };
  if (run_actor) {
    for (int slot = 0; slot < actors_per_node; ++slot) {
      if (auto st = start_actor(slot); !st.ok()) return fail(std::string(st.message()));
    }
  }
  write_state();
  // Applies an --add-actors request: starts actors, or stops the newest ones (they
  // flush their unacknowledged groups first).
  std::vector<ChildExit> exits_seen;  // reaped outside Poll()
  auto rescale = [&](int want) {
    if (!run_actor) {
      std::cerr << (tty ? "\n" : "")
                << "nbrl launch: ignoring --add-actors: this node runs no actors\n";
      return;
    }
    const int had = static_cast<int>(actor_names.size());
    while (static_cast<int>(actor_names.size()) < want) {
      if (auto st = start_actor(static_cast<int>(actor_names.size())); !st.ok()) {
        std::cerr << (tty ? "\n" : "")
                  << "nbrl launch: cannot add an actor: " << st.message() << "\n";
        break;
      }
    }
    if (static_cast<int>(actor_names.size()) > want) {
      std::vector<std::string> gone(actor_names.begin() + want, actor_names.end());
      actor_names.resize(want);
      // Stop reaps whatever exits meanwhile; the loop below must see those too.
      for (ChildExit& e : sup.Stop(gone, c.GetDuration("process.shutdown_grace"))) {
        if (std::find(gone.begin(), gone.end(), e.name) == gone.end()) {
          exits_seen.push_back(std::move(e));
        }
      }
    }
    std::cerr << (tty ? "\n" : "") << "nbrl launch: actors " << had << " -> "
              << actor_names.size() << "\n";
    write_state();
  };

  int64_t shown_step = -1;
  absl::Time next_status = absl::Now();
  std::set<std::string> actors_done;  // exited 0: the learner ended the run
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
    std::vector<ChildExit> exits = sup.Poll();
    exits.insert(exits.begin(), exits_seen.begin(), exits_seen.end());
    exits_seen.clear();
    for (const ChildExit& e : exits) {
      const bool is_learner = e.name.rfind("learner-", 0) == 0;
      const bool clean = WIFEXITED(e.wait_status) && WEXITSTATUS(e.wait_status) == 0;
      if (is_learner && clean) {
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
                  << StatusLine(ReadProgress(run_dir), 0,
                                static_cast<int>(actor_names.size()),
                                sup.total_restarts())
                  << "\n";
        return 0;
      }
      if (is_learner) {
        return fail(absl::StrCat(e.name, " failed (", DescribeWaitStatus(e.wait_status),
                                 "); see ", run_dir, "/logs/", e.name,
                                 ".log. Resume with: ", resume));
      }
      if (clean && e.name.rfind("actor-", 0) == 0) actors_done.insert(e.name);
      if (e.restarting) {
        restarts_counter.Add({{"process", e.name}}).Increment();
        std::cerr << (tty ? "\n" : "") << "nbrl launch: " << e.name << " "
                  << DescribeWaitStatus(e.wait_status) << "; restarting in "
                  << absl::FormatDuration(e.delay) << " (restart " << e.restarts
                  << ")\n";
      }
    }
    // A node without the learner ends when its actors have all been told the run
    // is finished (they exit 0).
    if (!run_learner && run_actor && !actor_names.empty()) {
      bool all_done = true;
      for (const auto& n : actor_names) all_done = all_done && actors_done.count(n) > 0;
      if (all_done) {
        sup.Stop(sandbox_names, absl::Seconds(10));
        std::cerr << (tty ? "\n" : "")
                  << "nbrl launch: run finished (the learner ended it); "
                  << actor_names.size() << " actors done\n";
        return 0;
      }
    }
    if (absl::Now() >= next_status) {
      next_status = absl::Now() + absl::Seconds(1);
      if (auto request = common::ReadFile(ScalePath(run_dir, node)); request.ok()) {
        std::remove(ScalePath(run_dir, node).c_str());
        int want = 0;
        if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*request), &want) &&
            want >= 0) {
          rescale(want);
        } else {
          std::cerr << (tty ? "\n" : "")
                    << "nbrl launch: ignoring a bad scale request '" << *request
                    << "'\n";
        }
      }
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
      const std::string line = StatusLine(
          p, alive, static_cast<int>(actor_names.size()), sup.total_restarts());
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
