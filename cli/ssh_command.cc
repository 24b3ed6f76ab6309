// `nbrl ssh-launch`: a multi-node run on plain hosts. Reads a YAML inventory of
// hosts and runs one `nbrl launch` per host over ssh, each with its node index,
// roles and the learner's address:
//
//   - the config file (when given) is copied to every host first, through the
//     same ssh connection settings, to <run.dir>/ssh-launch/node-<i>.yaml;
//   - each host's output comes back line by line, prefixed with "[<host>] ";
//   - Ctrl-C / SIGTERM closes the ssh sessions' standard input, the other hosts
//     first and the learner host once they have ended; the remote wrapper then
//     sends SIGTERM to its `nbrl launch`, which stops in order (actors flush
//     their groups, the learner leaves a checkpoint). A lost connection closes
//     it too. A second signal drops the connections; the remote launchers
//     finish stopping on their own;
//   - the run ends when the learner host's launcher ends; the other hosts get
//     kLingerAfterLearner to finish (their actors hear from the learner), then
//     are stopped the same way.
//
// Exits 0 when the learner host's launcher exited 0, 1 when it failed, 2 for a
// usage, inventory or configuration error.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/supervisor.h"
#include "common/command_line.h"
#include "common/config.h"
#include "common/file_util.h"
#include "common/nbrl_config.h"

namespace nbrl::cli {
namespace {

std::atomic<int> g_signals{0};
void OnSignal(int) { g_signals.fetch_add(1); }

// After the learner host is done, how long the other hosts may take to end by
// themselves (their actors hear from the learner) before they are told to stop.
constexpr absl::Duration kLingerAfterLearner = absl::Seconds(60);

constexpr char kUsage[] =
    "nbrl ssh-launch: run `nbrl launch` on every host of an inventory over ssh\n"
    "\n"
    "Usage: nbrl ssh-launch --inventory HOSTS.yaml [--config FILE] [key=value ...]\n"
    "                       [--dry-run]\n"
    "\n"
    "  --inventory FILE  the hosts (see docs/deploy-ssh.md and\n"
    "                    deploy/ssh/hosts.example.yaml)\n"
    "  --config FILE     the run's YAML file; it is copied to every host, to\n"
    "                    <run.dir>/ssh-launch/node-<i>.yaml\n"
    "  key=value         overrides, passed to every host's `nbrl launch`\n"
    "  --dry-run         print the ssh commands and exit\n"
    "\n"
    "Host i runs `nbrl launch` with launch.nodes, launch.node=i, launch.roles (the\n"
    "learner host: learner, plus sandbox and actor when it has actors), the\n"
    "learner's address and ports. Output comes back prefixed with the host name.\n"
    "Ctrl-C or SIGTERM stops every host in order (the learner leaves a checkpoint);\n"
    "running the same command again resumes. Exits 1 when the learner host's\n"
    "launcher failed, 2 for a bad inventory or configuration.\n";

// ---- The inventory ----

struct SshHost {
  std::string name;  // for messages and the output prefix; default: address
  std::string address;
  std::string user;
  int port = 0;  // 0: ssh's default
  std::string identity_file;
  std::vector<std::string> ssh_options;
  int actors = -1;     // -1: launch.actors of the configuration
  int sandboxes = -1;  // -1: launch.sandboxes of the configuration
  std::string bin_dir, run_dir, workdir;
};

struct Inventory {
  std::vector<SshHost> hosts;
  int learner = 0;              // index into hosts
  std::string learner_address;  // what the other hosts connect to
  int learner_port = 29500;
  int store_port = 0;  // 0: learner_port - 1
  bool copy_config = true;
};

// Reads the inventory, collecting every problem as "FILE:LINE: FIELD: problem".
class InventoryReader {
 public:
  explicit InventoryReader(std::string path) : path_(std::move(path)) {}

  absl::StatusOr<Inventory> Read() {
    YAML::Node root;
    try {
      root = YAML::LoadFile(path_);
    } catch (const YAML::BadFile&) {
      return absl::NotFoundError(absl::StrCat("inventory ", path_, " cannot be read"));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
    }
    Inventory inv;
    if (!root.IsMap()) {
      Error(root, "", "the top level must be a mapping with a 'hosts' list");
      return Result(inv);
    }
    CheckFields(root, "",
                {"hosts", "learner", "defaults", "ssh_options", "copy_config"});
    SshHost defaults;
    if (root["defaults"]) ReadHost(root["defaults"], "defaults", &defaults, true);
    std::vector<std::string> ssh_options;
    if (root["ssh_options"]) ssh_options = List(root["ssh_options"], "ssh_options");
    if (root["copy_config"]) inv.copy_config = Bool(root["copy_config"], "copy_config");
    const YAML::Node hosts = root["hosts"];
    if (!hosts || !hosts.IsSequence() || hosts.size() == 0) {
      Error(hosts ? hosts : root, "hosts", "expected a non-empty list of hosts");
      return Result(inv);
    }
    std::set<std::string> names;
    for (size_t i = 0; i < hosts.size(); ++i) {
      const std::string field = absl::StrCat("hosts[", i, "]");
      SshHost h = defaults;
      h.ssh_options = ssh_options;
      h.ssh_options.insert(h.ssh_options.end(), defaults.ssh_options.begin(),
                           defaults.ssh_options.end());
      ReadHost(hosts[i], field, &h, false);
      if (h.name.empty()) h.name = h.address;
      if (!names.insert(h.name).second) {
        Error(hosts[i], field + ".name", "'" + h.name + "' names two hosts");
      }
      inv.hosts.push_back(std::move(h));
    }
    ReadLearner(root["learner"], &inv);
    return Result(inv);
  }

 private:
  void Error(const YAML::Node& node, const std::string& field,
             const std::string& problem) {
    std::string where = path_;
    if (node.IsDefined() && node.Mark().line >= 0) {
      absl::StrAppend(&where, ":", node.Mark().line + 1);
    }
    errors_.push_back(
        absl::StrCat(where, ": ", field.empty() ? "" : field + ": ", problem));
  }
  absl::StatusOr<Inventory> Result(const Inventory& inv) {
    if (errors_.empty()) return inv;
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
  }
  void CheckFields(const YAML::Node& map, const std::string& field,
                   const std::vector<std::string>& known) {
    for (const auto& kv : map) {
      const std::string key = kv.first.as<std::string>("");
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        Error(kv.first, field.empty() ? key : field + "." + key,
              "unknown field (known: " + absl::StrJoin(known, ", ") + ")");
      }
    }
  }
  std::string String(const YAML::Node& n, const std::string& field) {
    if (!n.IsScalar() || n.Scalar().empty()) {
      Error(n, field, "expected a non-empty string");
      return "";
    }
    return n.Scalar();
  }
  int Int(const YAML::Node& n, const std::string& field, int min, int max) {
    int v = 0;
    if (!n.IsScalar() || !YAML::convert<int>::decode(n, v) || v < min || v > max) {
      Error(n, field,
            absl::StrCat("expected an integer from ", min, " to ", max, ", got '",
                         n.IsScalar() ? n.Scalar() : "a non-scalar", "'"));
      return min;
    }
    return v;
  }
  bool Bool(const YAML::Node& n, const std::string& field) {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
      Error(n, field, "expected true or false");
    }
    return v;
  }
  std::vector<std::string> List(const YAML::Node& n, const std::string& field) {
    std::vector<std::string> out;
    if (!n.IsSequence()) {
      Error(n, field, "expected a list of strings, e.g. [-o, ConnectTimeout=10]");
      return out;
    }
    for (const YAML::Node& item : n) out.push_back(String(item, field));
    return out;
  }

  void ReadHost(const YAML::Node& n, const std::string& field, SshHost* h,
                bool is_defaults) {
    if (!n.IsMap()) {
      Error(n, field, "expected a mapping (address: ..., actors: ...)");
      return;
    }
    CheckFields(n, field,
                {"name", "address", "user", "port", "identity_file", "ssh_options",
                 "actors", "sandboxes", "bin_dir", "run_dir", "workdir"});
    auto f = [&](const char* key) { return field + "." + key; };
    if (n["name"]) h->name = String(n["name"], f("name"));
    if (n["address"]) h->address = String(n["address"], f("address"));
    if (n["user"]) h->user = String(n["user"], f("user"));
    if (n["port"]) h->port = Int(n["port"], f("port"), 1, 65535);
    if (n["identity_file"])
      h->identity_file = String(n["identity_file"], f("identity_file"));
    if (n["ssh_options"]) {
      for (std::string& o : List(n["ssh_options"], f("ssh_options"))) {
        h->ssh_options.push_back(std::move(o));
      }
    }
    if (n["actors"]) h->actors = Int(n["actors"], f("actors"), 0, 4096);
    if (n["sandboxes"]) h->sandboxes = Int(n["sandboxes"], f("sandboxes"), 1, 4096);
    if (n["bin_dir"]) h->bin_dir = String(n["bin_dir"], f("bin_dir"));
    if (n["run_dir"]) h->run_dir = String(n["run_dir"], f("run_dir"));
    if (n["workdir"]) h->workdir = String(n["workdir"], f("workdir"));
    if (is_defaults) {
      if (n["address"] || n["name"]) Error(n, field, "address and name are per host");
      return;
    }
    if (!n["address"]) Error(n, field + ".address", "missing (what ssh connects to)");
    if (absl::StartsWith(h->address, "-") || absl::StrContains(h->address, " ")) {
      Error(n["address"], f("address"), "'" + h->address + "' is not a host name");
    }
  }

  void ReadLearner(const YAML::Node& n, Inventory* inv) {
    if (!n) {
      inv->learner_address = inv->hosts.empty() ? "" : inv->hosts[0].address;
    } else if (!n.IsMap()) {
      Error(n, "learner", "expected a mapping (host: ..., address: ..., port: ...)");
      return;
    } else {
      CheckFields(n, "learner", {"host", "address", "port", "store_port"});
      if (n["host"]) {
        const std::string name = String(n["host"], "learner.host");
        auto it = std::find_if(inv->hosts.begin(), inv->hosts.end(),
                               [&](const SshHost& h) { return h.name == name; });
        if (it == inv->hosts.end()) {
          Error(n["host"], "learner.host", "'" + name + "' is not a host's name");
        } else {
          inv->learner = static_cast<int>(it - inv->hosts.begin());
        }
      }
      if (n["port"]) inv->learner_port = Int(n["port"], "learner.port", 2, 65535);
      if (n["store_port"])
        inv->store_port = Int(n["store_port"], "learner.store_port", 1, 65535);
      if (n["address"]) inv->learner_address = String(n["address"], "learner.address");
    }
    if (inv->learner_address.empty() && !inv->hosts.empty()) {
      // user@host in an address is ssh's business, not the actors'.
      const std::string& a = inv->hosts[inv->learner].address;
      inv->learner_address = a.substr(a.find('@') + 1);
    }
    if (inv->store_port == 0) inv->store_port = inv->learner_port - 1;
  }

  std::string path_;
  std::vector<std::string> errors_;
};

// ---- Commands ----

// `word` for a POSIX shell: as is when it is plain, else in single quotes.
std::string ShellQuote(const std::string& word) {
  if (!word.empty() &&
      word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789_-./=:,@%+") == std::string::npos) {
    return word;
  }
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string ShellJoin(const std::vector<std::string>& words) {
  std::vector<std::string> quoted;
  for (const std::string& w : words) quoted.push_back(ShellQuote(w));
  return absl::StrJoin(quoted, " ");
}

std::string LocalBinDir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string d(buf, static_cast<size_t>(n));
  d = d.substr(0, d.rfind('/'));
  // build/cli/nbrl -> build (the remote side looks in <bin_dir>/cli/ first).
  if (absl::EndsWith(d, "/cli")) d.resize(d.size() - 4);
  return d;
}

std::string CurrentDir() {
  char buf[4096];
  return ::getcwd(buf, sizeof(buf)) != nullptr ? std::string(buf) : ".";
}

// What runs for one host.
struct HostPlan {
  const SshHost* host = nullptr;
  int node = 0;   // launch.node
  int nodes = 0;  // launch.nodes
  bool learner = false;
  std::vector<std::string> roles;
  std::vector<std::string> ssh;  // ssh and its options, up to the address
  std::string copy;              // remote command that stores the config (stdin)
  std::string launch;            // remote command that runs `nbrl launch`
};

// Node indices and roles. `nbrl launch` numbers node k's actors from
// k*launch.actors and splits the data into launch.nodes*launch.actors shards, so
// the hosts with actors are nodes 0..M-1 with launch.nodes=M and the same
// launch.actors; a learner host without actors is node M of M+1 (no data shard
// of its own goes unread).
absl::StatusOr<std::vector<HostPlan>> AssignNodes(const Inventory& inv,
                                                  const common::Config& config) {
  std::vector<HostPlan> plans(inv.hosts.size());
  int with_actors = 0, per_node = -1, sandboxes_per_node = -1;
  const SshHost* first = nullptr;
  for (size_t i = 0; i < inv.hosts.size(); ++i) {
    const SshHost& h = inv.hosts[i];
    HostPlan& p = plans[i];
    p.host = &h;
    p.learner = static_cast<int>(i) == inv.learner;
    if (h.actors == 0 && !p.learner) {
      return absl::InvalidArgumentError(
          absl::StrCat("host ", h.name,
                       " has actors: 0 and is not the learner host: nothing to run"));
    }
    if (h.actors == 0) continue;
    const int actors =
        h.actors > 0 ? h.actors : static_cast<int>(config.GetInt("launch.actors"));
    if (per_node >= 0 && actors != per_node) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hosts ", first->name, " and ", h.name, " run ", per_node, " and ", actors,
          " actors: nbrl launch numbers node k's actors from k*launch.actors, so "
          "every host with actors needs the same count (0 for none); add more on "
          "one host later with `nbrl launch ... --add-actors N` there"));
    }
    const int sandboxes = h.sandboxes > 0
                              ? h.sandboxes
                              : static_cast<int>(config.GetInt("launch.sandboxes"));
    if (per_node >= 0 && sandboxes != sandboxes_per_node) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hosts ", first->name, " and ", h.name, " run ", sandboxes_per_node, " and ",
          sandboxes,
          " sandbox workers: nbrl launch numbers node k's workers from "
          "k*launch.sandboxes, so every host with actors needs the same count"));
    }
    sandboxes_per_node = sandboxes;
    per_node = actors;
    first = first ? first : &h;
    p.node = with_actors++;
    p.roles = {"sandbox"};
    if (p.learner) p.roles.push_back("learner");
    p.roles.push_back("actor");
  }
  if (with_actors == 0) {
    return absl::InvalidArgumentError("no host runs actors (every host has actors: 0)");
  }
  for (HostPlan& p : plans) {
    p.nodes = with_actors;
    if (p.roles.empty()) {
      p.roles = {"learner"};
      p.node = with_actors;
      p.nodes = with_actors + 1;
    }
  }
  return plans;
}

// Fills in plan.ssh, plan.copy and plan.launch.
void PlanCommands(const Inventory& inv, const common::Config& config,
                  const common::CommandLine& cl, HostPlan& p) {
  const SshHost& h = *p.host;
  p.ssh = {"ssh", "-o", "BatchMode=yes"};
  if (h.port != 0) p.ssh.insert(p.ssh.end(), {"-p", std::to_string(h.port)});
  if (!h.user.empty()) p.ssh.insert(p.ssh.end(), {"-l", h.user});
  if (!h.identity_file.empty()) p.ssh.insert(p.ssh.end(), {"-i", h.identity_file});
  p.ssh.insert(p.ssh.end(), h.ssh_options.begin(), h.ssh_options.end());
  p.ssh.push_back(h.address);

  const std::string run_dir =
      h.run_dir.empty() ? config.GetString("run.dir") : h.run_dir;
  const std::string state = absl::StrCat(run_dir, "/ssh-launch/node-", p.node);
  const std::string bin = h.bin_dir.empty() ? LocalBinDir() : h.bin_dir;
  const std::string cd = absl::StrCat(
      "cd ", ShellQuote(h.workdir.empty() ? CurrentDir() : h.workdir),
      " || exit 2; mkdir -p ", ShellQuote(run_dir + "/ssh-launch"), " || exit 2; ");
  std::vector<std::string> args = {"\"$b\"", "launch"};
  if (!cl.config_path.empty() && inv.copy_config) {
    p.copy =
        absl::StrCat(cd, "cat > ", ShellQuote(state + ".yaml.tmp"), " && mv ",
                     ShellQuote(state + ".yaml.tmp"), " ", ShellQuote(state + ".yaml"));
  }
  if (!cl.config_path.empty()) {
    args.push_back("--config");
    args.push_back(ShellQuote(inv.copy_config ? state + ".yaml" : cl.config_path));
  }
  std::vector<std::string> overrides = cl.overrides;
  overrides.insert(
      overrides.end(),
      {absl::StrCat("launch.nodes=", p.nodes), absl::StrCat("launch.node=", p.node),
       absl::StrCat("launch.roles=[", absl::StrJoin(p.roles, ","), "]"),
       "launch.learner_host=" + inv.learner_address,
       absl::StrCat("launch.learner_port=", inv.learner_port),
       "learner.address=0.0.0.0:0",
       absl::StrCat("learner.store_address=", inv.learner_address, ":",
                    inv.store_port)});
  if (h.actors > 0) overrides.push_back(absl::StrCat("launch.actors=", h.actors));
  if (h.sandboxes > 0)
    overrides.push_back(absl::StrCat("launch.sandboxes=", h.sandboxes));
  if (!h.run_dir.empty()) overrides.push_back("run.dir=" + h.run_dir);
  for (const std::string& o : overrides) args.push_back(ShellQuote(o));
  // The wrapper: a pid file for operators; SIGTERM to the launcher when this
  // session's standard input closes (ssh-launch stopping, or the connection
  // gone); SIGPIPE ignored, so that a launcher whose connection is gone still
  // stops in order instead of dying on its next line of output.
  const std::string nbrl = ShellQuote(bin + "/nbrl"),
                    in_tree = ShellQuote(bin + "/cli/nbrl");
  p.launch = absl::StrCat(
      cd, "b=", nbrl, "; [ -x ", in_tree, " ] && b=", in_tree,
      "; [ -x \"$b\" ] || { echo ",
      ShellQuote("nbrl ssh-launch: no executable nbrl in " + bin +
                 " (set bin_dir in the inventory)"),
      " >&2; exit 127; }; trap '' PIPE; exec 3<&0; ", absl::StrJoin(args, " "),
      " </dev/null 3<&- & pid=$!; echo $pid > ", ShellQuote(state + ".pid"),
      "; ( read -r _ <&3; kill -TERM $pid 2>/dev/null ) & w=$!; ",
      "wait $pid; rc=$?; kill $w 2>/dev/null; rm -f ", ShellQuote(state + ".pid"),
      "; exit $rc");
}

absl::StatusOr<std::vector<HostPlan>> Plan(const Inventory& inv,
                                           const common::Config& config,
                                           const common::CommandLine& cl) {
  const int ranks = static_cast<int>(config.GetInt("learner.world_size"));
  if (inv.store_port >= inv.learner_port && inv.store_port < inv.learner_port + ranks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "learner.store_port ", inv.store_port, " is one of the learner ranks' ports ",
        inv.learner_port, "..", inv.learner_port + ranks - 1,
        "; choose another in the inventory"));
  }
  auto plans = AssignNodes(inv, config);
  if (!plans.ok()) return plans.status();
  for (HostPlan& p : *plans) PlanCommands(inv, config, cl, p);
  return plans;
}

// ---- Running ssh ----

struct Session {
  const HostPlan* plan = nullptr;
  pid_t pid = -1;
  int in = -1;   // our end of its standard input; -1 once closed
  int out = -1;  // its stdout and stderr; -1 at EOF
  std::string partial;
  int status = 0;
  bool exited = false;
};

// Starts `argv` in its own process group (a terminal's Ctrl-C reaches only us)
// with standard input from `stdin_fd` (-1: a pipe kept in session->in) and
// stdout + stderr into a pipe (session->out).
absl::Status Spawn(const std::vector<std::string>& argv, int stdin_fd, Session* s) {
  int in[2] = {-1, -1}, out[2];
  if (stdin_fd < 0 && ::pipe2(in, O_CLOEXEC) != 0) {
    return common::ErrnoToStatus(errno, "pipe");
  }
  if (::pipe2(out, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return common::ErrnoToStatus(errno, "fork for ssh");
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(stdin_fd >= 0 ? stdin_fd : in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::execvp(args[0], args.data());
    std::string msg = absl::StrCat("cannot run ", argv[0], ": ", strerror(errno), "\n");
    (void)!::write(2, msg.data(), msg.size());
    ::_exit(127);
  }
  if (stdin_fd < 0) {
    ::close(in[0]);
    s->in = in[1];
  }
  ::close(out[1]);
  s->out = out[0];
  s->pid = pid;
  return absl::OkStatus();
}

void CloseInput(Session& s) {
  if (s.in >= 0) ::close(s.in);
  s.in = -1;
}

// Prints what the sessions wrote, line by line with their host's name, and reaps
// exits, for up to `timeout`.
void Pump(std::vector<Session>& sessions, absl::Duration timeout) {
  std::vector<pollfd> fds;
  std::vector<Session*> owners;
  for (Session& s : sessions) {
    if (s.out < 0) continue;
    fds.push_back({s.out, POLLIN, 0});
    owners.push_back(&s);
  }
  if (!fds.empty()) {
    ::poll(fds.data(), fds.size(),
           static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  } else {
    absl::SleepFor(timeout);
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents == 0) continue;
    Session& s = *owners[i];
    char buf[8192];
    const ssize_t n = ::read(s.out, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) s.partial.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = s.partial.find('\n', start)) != std::string::npos;
         start = nl + 1) {
      std::cerr << "[" << s.plan->host->name << "] "
                << s.partial.substr(start, nl - start) << "\n";
    }
    s.partial.erase(0, start);
    if (n <= 0) {
      if (!s.partial.empty())
        std::cerr << "[" << s.plan->host->name << "] " << s.partial << "\n";
      s.partial.clear();
      ::close(s.out);
      s.out = -1;
    }
  }
  for (Session& s : sessions) {
    if (!s.exited && ::waitpid(s.pid, &s.status, WNOHANG) == s.pid) s.exited = true;
  }
}

bool Done(const Session& s) { return s.exited && s.out < 0; }

// Stores the config file on every host; false (having said why) on a failure.
bool CopyConfig(const std::vector<HostPlan>& plans, const std::string& config_path) {
  std::vector<Session> sessions(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    sessions[i].plan = &plans[i];
    int fd = ::open(config_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::cerr << "nbrl ssh-launch: cannot read " << config_path << ": "
                << strerror(errno) << "\n";
      return false;
    }
    std::vector<std::string> argv = plans[i].ssh;
    argv.push_back(plans[i].copy);
    absl::Status st = Spawn(argv, fd, &sessions[i]);
    ::close(fd);
    if (!st.ok()) {
      std::cerr << "nbrl ssh-launch: " << st.message() << "\n";
      return false;
    }
  }
  bool ok = true;
  while (!std::all_of(sessions.begin(), sessions.end(), Done)) {
    Pump(sessions, absl::Milliseconds(200));
  }
  for (const Session& s : sessions) {
    if (!WIFEXITED(s.status) || WEXITSTATUS(s.status) != 0) {
      std::cerr << "nbrl ssh-launch: copying " << config_path << " to "
                << s.plan->host->name << " failed (" << DescribeWaitStatus(s.status)
                << ")\n";
      ok = false;
    }
  }
  return ok;
}

struct StopGrace {
  // How long the other hosts may take to stop (their actors flush their groups to
  // the learner) before the learner host is told to stop.
  absl::Duration others;
  // How long all may take to stop (the learner writes a checkpoint) before ssh
  // is disconnected.
  absl::Duration all;
};

// Runs every host's launcher to its end; returns the exit code of ssh-launch.
// `resume` is the command that resumes the run, printed when it is stopped.
int RunSessions(const std::vector<HostPlan>& plans, const StopGrace& grace,
                const std::string& resume) {
  std::vector<Session> sessions(plans.size());
  size_t learner = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    sessions[i].plan = &plans[i];
    if (plans[i].learner) learner = i;
  }
  for (Session& s : sessions) {
    std::vector<std::string> argv = s.plan->ssh;
    argv.push_back(s.plan->launch);
    if (absl::Status st = Spawn(argv, -1, &s); !st.ok()) {
      std::cerr << "nbrl ssh-launch: " << st.message() << "\n";
      for (Session& t : sessions) CloseInput(t);
      s.exited = true;
      s.status = 127 << 8;
    }
  }
  int seen_signals = 0;
  bool stopping = false, learner_reported = false;
  absl::Time stop_learner_at = absl::InfiniteFuture(),
             stop_others_at = absl::InfiniteFuture(), kill_at = absl::InfiniteFuture();
  auto stop_others = [&] {
    for (Session& s : sessions) {
      if (!s.plan->learner) CloseInput(s);
    }
    kill_at = std::min(kill_at, absl::Now() + grace.all);
  };
  auto others_exited = [&] {
    return std::all_of(sessions.begin(), sessions.end(),
                       [](const Session& s) { return s.plan->learner || s.exited; });
  };
  while (!std::all_of(sessions.begin(), sessions.end(), Done)) {
    Pump(sessions, absl::Milliseconds(200));
    if (g_signals.load() > seen_signals) {
      seen_signals = g_signals.load();
      if (seen_signals == 1) {
        std::cerr << "nbrl ssh-launch: stopping the other hosts, then the learner "
                     "host; a second signal disconnects\n";
        stopping = true;
        stop_others();
        stop_learner_at = absl::Now() + grace.others;
      } else {
        kill_at = absl::Now();
      }
    }
    if (absl::Now() >= stop_learner_at || (stopping && others_exited())) {
      stop_learner_at = absl::InfiniteFuture();
      CloseInput(sessions[learner]);
    }
    const Session& l = sessions[learner];
    if (l.exited && !learner_reported) {
      learner_reported = true;
      std::cerr << "nbrl ssh-launch: learner host " << l.plan->host->name
                << "'s launcher ended (" << DescribeWaitStatus(l.status) << ")\n";
      const bool ok = WIFEXITED(l.status) && WEXITSTATUS(l.status) == 0;
      stop_others_at = ok ? absl::Now() + kLingerAfterLearner : absl::Now();
    }
    if (absl::Now() >= stop_others_at) {
      stop_others_at = absl::InfiniteFuture();
      stop_others();
    }
    if (absl::Now() >= kill_at) {
      kill_at = absl::InfiniteFuture();
      std::cerr << "nbrl ssh-launch: disconnecting; the remote launchers finish "
                   "stopping on their own (logs in <run.dir>/logs/ on each host)\n";
      for (Session& s : sessions) {
        if (!s.exited) ::kill(s.pid, SIGTERM);
      }
    }
  }
  bool learner_ok = false;
  for (const Session& s : sessions) {
    const bool ok = WIFEXITED(s.status) && WEXITSTATUS(s.status) == 0;
    if (s.plan->learner) learner_ok = ok;
    std::cerr << "nbrl ssh-launch: " << s.plan->host->name << " (node " << s.plan->node
              << ", " << absl::StrJoin(s.plan->roles, ",")
              << "): " << (ok ? "done" : DescribeWaitStatus(s.status)) << "\n";
  }
  if (stopping || !learner_ok)
    std::cerr << "nbrl ssh-launch: resume with: " << resume << "\n";
  return learner_ok ? 0 : 1;
}

}  // namespace

int SshLaunchCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.value_flags = {"--inventory"};
  options.bool_flags = {"--dry-run"};
  auto cl = common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl ssh-launch: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout << kUsage;
    return 0;
  }
  std::string inventory_path;
  bool dry_run = false;
  for (const std::string& word : cl->positional) {
    if (absl::StartsWith(word, "--inventory=")) inventory_path = word.substr(12);
    if (word == "--dry-run") dry_run = true;
  }
  if (inventory_path.empty()) {
    std::cerr << "nbrl ssh-launch: --inventory HOSTS.yaml is required (try --help)\n";
    return 2;
  }
  auto inventory = InventoryReader(inventory_path).Read();
  if (!inventory.ok()) {
    std::cerr << "nbrl ssh-launch: " << inventory.status().message() << "\n";
    return 2;
  }
  auto config =
      common::Config::Load(common::NbrlConfigSchema(), cl->config_path, cl->overrides);
  if (!config.ok()) {
    std::cerr << "nbrl ssh-launch: " << config.status().message() << "\n";
    return 2;
  }
  auto plans = Plan(*inventory, *config, *cl);
  if (!plans.ok()) {
    std::cerr << "nbrl ssh-launch: " << inventory_path << ": "
              << plans.status().message() << "\n";
    return 2;
  }
  if (dry_run) {
    for (const HostPlan& p : *plans) {
      std::vector<std::string> ssh = p.ssh;
      std::cout << "# " << p.host->name << ": node " << p.node << " of " << p.nodes
                << ", roles " << absl::StrJoin(p.roles, ",") << "\n";
      if (!p.copy.empty()) {
        ssh.push_back(p.copy);
        std::cout << ShellJoin(ssh) << " < " << ShellQuote(cl->config_path) << "\n";
        ssh.pop_back();
      }
      ssh.push_back(p.launch);
      std::cout << ShellJoin(ssh) << "\n";
    }
    return 0;
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  // A session's stdin pipe may be closed by ssh before we close our end.
  ::signal(SIGPIPE, SIG_IGN);
  std::cerr << "nbrl ssh-launch: " << plans->size() << " hosts, learner on "
            << (*plans)[inventory->learner].host->name << " ("
            << inventory->learner_address << ":" << inventory->learner_port << ")\n";
  if (!cl->config_path.empty() && inventory->copy_config &&
      !CopyConfig(*plans, cl->config_path)) {
    return 1;
  }
  if (g_signals.load() > 0) {
    std::cerr << "nbrl ssh-launch: interrupted before any launcher started\n";
    return 1;
  }
  StopGrace grace;
  grace.others = config->GetDuration("process.shutdown_grace") + absl::Seconds(30);
  grace.all =
      grace.others + config->GetDuration("learner.shutdown_grace") + absl::Minutes(1);
  std::vector<std::string> resume = {"nbrl", "ssh-launch", "--inventory",
                                     inventory_path};
  if (!cl->config_path.empty()) {
    resume.insert(resume.end(), {"--config", cl->config_path});
  }
  resume.insert(resume.end(), cl->overrides.begin(), cl->overrides.end());
  return RunSessions(*plans, grace, ShellJoin(resume));
}

}  // namespace nbrl::cli
