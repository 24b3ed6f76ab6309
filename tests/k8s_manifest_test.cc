// deploy/k8s renders to Kubernetes objects that agree with each other and with the
// run's configuration. `kubectl kustomize` renders the kustomization offline; the
// checks are the mistakes a cluster would otherwise show at run time: a Service
// that selects no pod, a rendezvous name that does not resolve, a port the process
// does not listen on, a scrape annotation pointing elsewhere, a volume that does
// not exist, a ConfigMap our config loader rejects. The containers' shell commands
// run here too, with stub binaries that print the arguments they get, so the
// derived process.rank and actor.learner are checked as well.
//
// `kubectl apply --dry-run=client` and `kubectl create --dry-run=client` are not
// used: even with --validate=false they ask an API server for the kinds' REST
// mappings, and no cluster exists in tests. The checks here are structural.
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/file_util.h"
#include "common/nbrl_config.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl {
namespace {

using common::Config;
using testutil::RunCommand;
using testutil::RunResult;

std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':')) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string SourceDir() {
  const char* dir = std::getenv("NBRL_SOURCE_DIR");
  return dir ? dir : "";
}

// yaml-cpp: a default YAML::Node is a defined null, and assigning to a Node that
// refers to another changes that other one; so "not found" is a null node, tested
// with Found(), and a found node is bound with reset().
bool Found(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }

std::string Str(const YAML::Node& n) {
  return Found(n) && n.IsScalar() ? n.Scalar() : "";
}

// The port of "host:port"; -1 when there is none.
int PortOf(const std::string& host_port) {
  int port = -1;
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    return -1;
  }
  return port;
}

std::string HostOf(const std::string& host_port) {
  return host_port.substr(0, host_port.rfind(':'));
}

bool IsUnder(const std::string& path, const std::string& dir) {
  return path == dir || absl::StartsWith(path, absl::StrCat(dir, "/"));
}

// Every label of `selector` is on `labels` with the same value.
bool Selects(const YAML::Node& selector, const YAML::Node& labels) {
  if (!Found(selector) || !selector.IsMap() || selector.size() == 0) return false;
  for (const auto& kv : selector) {
    if (!Found(labels) || Str(labels[kv.first.Scalar()]) != Str(kv.second)) {
      return false;
    }
  }
  return true;
}

// `kubectl kustomize DIR`, parsed into its documents.
struct Rendered {
  std::vector<YAML::Node> docs;
};

absl::StatusOr<Rendered> Render(const std::string& kubectl, const std::string& dir) {
  absl::StatusOr<RunResult> r =
      RunCommand({kubectl, "kustomize", dir}, absl::Seconds(120));
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("kubectl kustomize ", dir, " exited ",
                                            r->exit_code, ":\n", r->err));
  }
  Rendered out;
  try {
    for (const YAML::Node& doc : YAML::LoadAll(r->out)) {
      if (doc && doc.IsMap()) out.docs.push_back(doc);
    }
  } catch (const YAML::Exception& e) {
    return absl::InternalError(
        absl::StrCat("rendered YAML does not parse: ", e.what()));
  }
  return out;
}

// The containers of a pod spec: init containers (native sidecars) and containers.
std::vector<YAML::Node> Containers(const YAML::Node& pod_spec) {
  std::vector<YAML::Node> out;
  for (const char* field : {"initContainers", "containers"}) {
    if (!pod_spec[field]) continue;
    for (const YAML::Node& c : pod_spec[field]) out.push_back(c);
  }
  return out;
}

// The container whose command runs `binary` (e.g. "exec nbrl-actor").
YAML::Node ContainerRunning(const YAML::Node& pod_spec, const std::string& binary) {
  for (const YAML::Node& c : Containers(pod_spec)) {
    for (const YAML::Node& part : c["command"]) {
      if (absl::StrContains(Str(part), absl::StrCat("exec ", binary))) return c;
    }
  }
  return YAML::Node();
}

// containerPort by port name, for one container.
std::map<std::string, int> PortsByName(const YAML::Node& container) {
  std::map<std::string, int> out;
  for (const YAML::Node& p : container["ports"]) {
    out[Str(p["name"])] = p["containerPort"].as<int>();
  }
  return out;
}

bool HasPort(const YAML::Node& container, int port) {
  for (const auto& [name, number] : PortsByName(container)) {
    if (number == port) return true;
  }
  return false;
}

// The mount whose mountPath holds `path` (the longest one), or a null node.
YAML::Node MountFor(const YAML::Node& container, const std::string& path) {
  YAML::Node best;
  for (const YAML::Node& m : container["volumeMounts"]) {
    if (IsUnder(path, Str(m["mountPath"])) &&
        (!Found(best) || Str(m["mountPath"]).size() > Str(best["mountPath"]).size())) {
      best.reset(m);
    }
  }
  return best;
}

YAML::Node VolumeNamed(const YAML::Node& pod_spec, const std::string& name) {
  for (const YAML::Node& v : pod_spec["volumes"]) {
    if (Str(v["name"]) == name) return v;
  }
  return YAML::Node();
}

// What a container's `/bin/sh -c SCRIPT` command did, run here.
struct Exec {
  std::string binary;                   // the nbrl binary it exec'd
  std::vector<std::string> positional;  // e.g. "serve"
  std::string config_path;              // --config
  std::vector<std::string> overrides;   // key=value
};

class K8sManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubectl_ = FindOnPath("kubectl");
    if (kubectl_.empty()) {
      GTEST_SKIP() << "kubectl is not on PATH (deploy/setup.sh installs "
                      "kubernetes-client); cannot render deploy/k8s";
    }
    ASSERT_FALSE(SourceDir().empty()) << "NBRL_SOURCE_DIR is not set; run via ctest";
    absl::StatusOr<Rendered> r = Render(kubectl_, SourceDir() + "/deploy/k8s");
    ASSERT_TRUE(r.ok()) << r.status();
    rendered_ = *std::move(r);
    for (const YAML::Node& d : rendered_.docs) {
      by_kind_[Str(d["kind"])].push_back(d);
    }
    ASSERT_EQ(by_kind_["StatefulSet"].size(), 1u) << "one StatefulSet: the learners";
    ASSERT_EQ(by_kind_["Deployment"].size(), 1u) << "one Deployment: the actors";
    learners_.reset(by_kind_["StatefulSet"][0]);
    actors_.reset(by_kind_["Deployment"][0]);

    // The run's nbrl.yaml, from the ConfigMap, through our own loader.
    dir_ = tmp_.path();
    for (const YAML::Node& cm : by_kind_["ConfigMap"]) {
      if (Found(cm["data"]["nbrl.yaml"])) config_map_.reset(cm);
    }
    ASSERT_TRUE(Found(config_map_)) << "no ConfigMap has an nbrl.yaml";
    config_path_ = dir_ + "/nbrl.yaml";
    ASSERT_TRUE(common::WriteFileAtomically(config_path_,
                                            Str(config_map()["data"]["nbrl.yaml"]))
                    .ok());
    absl::StatusOr<Config> config =
        Config::Load(common::NbrlConfigSchema(), config_path_, {});
    ASSERT_TRUE(config.ok()) << "the ConfigMap's nbrl.yaml: " << config.status();
    config_.emplace(*std::move(config));

    // Stubs for the container commands: the real `nbrl` (they read the resolved
    // configuration with `nbrl config`), and the three programs as scripts that
    // print their arguments.
    stubs_ = dir_ + "/bin";
    std::filesystem::create_directories(stubs_);
    // A copy, not a link: the test then runs one binary throughout, also when the
    // build tree is relinked meanwhile.
    std::error_code ec;
    std::filesystem::copy_file(testutil::BinaryPath("cli/nbrl"), stubs_ + "/nbrl", ec);
    ASSERT_FALSE(ec) << "cannot copy " << testutil::BinaryPath("cli/nbrl") << ": "
                     << ec.message();
    for (const char* name : {"nbrl-learner", "nbrl-actor", "nbrl-sandbox"}) {
      std::string stub = absl::StrCat(stubs_, "/", name);
      ASSERT_TRUE(common::WriteFileAtomically(
                      stub, absl::StrCat("#!/bin/sh\necho \"EXEC ", name,
                                         "\"\nfor a in \"$@\"; do echo \"ARG $a\"; "
                                         "done\n"))
                      .ok());
      std::filesystem::permissions(stub, std::filesystem::perms::owner_all);
    }
  }

  const Config& config() const { return *config_; }
  // Read through const nodes: yaml-cpp's non-const operator[] may add keys.
  const YAML::Node& learners() const { return learners_; }
  const YAML::Node& actors() const { return actors_; }
  const YAML::Node& config_map() const { return config_map_; }
  static YAML::Node PodSpec(const YAML::Node& workload) {
    return workload["spec"]["template"]["spec"];
  }

  // The mountPath of the ConfigMap's volume in `container` (where nbrl.yaml is).
  std::string ConfigMountPath(const YAML::Node& pod_spec, const YAML::Node& container) {
    for (const YAML::Node& m : container["volumeMounts"]) {
      const YAML::Node v = VolumeNamed(pod_spec, Str(m["name"]));
      if (Found(v["configMap"]) &&
          Str(v["configMap"]["name"]) == Str(config_map()["metadata"]["name"])) {
        return Str(m["mountPath"]);
      }
    }
    return "";
  }

  // Runs the container's command here as pod `hostname`, its nbrl.yaml (at the
  // ConfigMap's mount) replaced by the rendered one, its programs by the stubs.
  absl::StatusOr<Exec> RunCommandOf(const YAML::Node& pod_spec,
                                    const YAML::Node& container,
                                    const std::string& hostname) {
    const YAML::Node& cmd = container["command"];
    if (!Found(cmd) || cmd.size() != 3 || Str(cmd[0]) != "/bin/sh" ||
        Str(cmd[1]) != "-c") {
      return absl::InvalidArgumentError(absl::StrCat(
          "container ", Str(container["name"]), ": command is not [/bin/sh, -c, ...]"));
    }
    const std::string mount = ConfigMountPath(pod_spec, container);
    if (mount.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "container ", Str(container["name"]), " does not mount the ConfigMap"));
    }
    const std::string in_pod = mount + "/nbrl.yaml";
    std::string script = Str(cmd[2]);
    if (!absl::StrContains(script, in_pod)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "container ", Str(container["name"]), ": the command does not use ", in_pod,
          " (the ConfigMap is mounted at ", mount, ")"));
    }
    absl::StrReplaceAll({{in_pod, config_path_}}, &script);
    absl::StatusOr<RunResult> r = RunCommand(
        {"/usr/bin/env", "-i", absl::StrCat("PATH=", stubs_, ":/usr/bin:/bin"),
         absl::StrCat("HOSTNAME=", hostname), "/bin/sh", "-c", script},
        absl::Seconds(60));
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError(absl::StrCat("container ", Str(container["name"]),
                                              " as ", hostname, " exited ",
                                              r->exit_code, ":\n", r->out, r->err));
    }
    Exec e;
    std::vector<std::string> args;
    for (absl::string_view line : absl::StrSplit(r->out, '\n')) {
      if (absl::ConsumePrefix(&line, "EXEC ")) e.binary = std::string(line);
      if (absl::ConsumePrefix(&line, "ARG ")) args.emplace_back(line);
    }
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--config" && i + 1 < args.size()) {
        e.config_path = args[++i];
      } else if (absl::StrContains(args[i], "=")) {
        e.overrides.push_back(args[i]);
      } else {
        e.positional.push_back(args[i]);
      }
    }
    if (e.binary.empty()) {
      return absl::InternalError(absl::StrCat("container ", Str(container["name"]),
                                              " ran no nbrl program:\n", r->out));
    }
    return e;
  }

  // The configuration a container's process runs with.
  absl::StatusOr<Config> Resolve(const Exec& e) {
    if (e.config_path != config_path_) {
      return absl::InvalidArgumentError(
          absl::StrCat(e.binary, " got --config '", e.config_path, "'"));
    }
    return Config::Load(common::NbrlConfigSchema(), config_path_, e.overrides);
  }

  std::string kubectl_;
  Rendered rendered_;
  std::map<std::string, std::vector<YAML::Node>> by_kind_;
  YAML::Node learners_, actors_, config_map_;
  testutil::TempDir tmp_{"nbrl-k8s"};
  std::string dir_, config_path_, stubs_;
  std::optional<Config> config_;
};

TEST_F(K8sManifestTest, EveryServiceSelectsAWorkloadsPodsAndTheirPorts) {
  ASSERT_FALSE(by_kind_["Service"].empty());
  for (const YAML::Node& svc : by_kind_["Service"]) {
    const std::string name = Str(svc["metadata"]["name"]);
    YAML::Node selected;
    for (const YAML::Node& w : {learners_, actors_}) {
      if (Selects(svc["spec"]["selector"],
                  w["spec"]["template"]["metadata"]["labels"])) {
        selected.reset(w);
      }
    }
    ASSERT_TRUE(Found(selected)) << "Service " << name << " selects no workload's pods";
    std::set<std::string> names;
    std::set<int> numbers;
    for (const YAML::Node& c : Containers(PodSpec(selected))) {
      for (const auto& [port_name, number] : PortsByName(c)) {
        names.insert(port_name);
        numbers.insert(number);
      }
    }
    for (const YAML::Node& p : svc["spec"]["ports"]) {
      const std::string target = Str(p["targetPort"]);
      int number = 0;
      if (target.empty()) {
        EXPECT_TRUE(numbers.count(p["port"].as<int>()))
            << name << " port " << p["port"];
      } else if (absl::SimpleAtoi(target, &number)) {
        EXPECT_TRUE(numbers.count(number)) << name << " targetPort " << target;
      } else {
        EXPECT_TRUE(names.count(target))
            << name << " targetPort " << target << " names no containerPort";
      }
    }
  }
  for (const YAML::Node& w : {learners_, actors_}) {
    EXPECT_TRUE(Selects(w["spec"]["selector"]["matchLabels"],
                        w["spec"]["template"]["metadata"]["labels"]))
        << Str(w["metadata"]["name"]) << ": selector does not match its pod template";
  }
}

TEST_F(K8sManifestTest, LearnerRanksMeetThroughTheHeadlessService) {
  const std::string service = Str(learners()["spec"]["serviceName"]);
  YAML::Node match;
  for (const YAML::Node& svc : by_kind_["Service"]) {
    if (Str(svc["metadata"]["name"]) == service) match.reset(svc);
  }
  const YAML::Node headless = match;
  ASSERT_TRUE(Found(headless)) << "serviceName " << service << " names no Service";
  EXPECT_EQ(Str(headless["spec"]["clusterIP"]), "None")
      << service << " is not headless";
  EXPECT_TRUE(Selects(headless["spec"]["selector"],
                      learners()["spec"]["template"]["metadata"]["labels"]));
  // Ranks meet before any is ready: their names must resolve before readiness, and
  // all of them must start at once.
  EXPECT_EQ(Str(headless["spec"]["publishNotReadyAddresses"]), "true");
  EXPECT_EQ(Str(learners()["spec"]["podManagementPolicy"]), "Parallel");

  const int replicas = learners()["spec"]["replicas"].as<int>();
  EXPECT_EQ(replicas, config().GetInt("learner.world_size"))
      << "StatefulSet replicas and learner.world_size differ";

  const std::string set = Str(learners()["metadata"]["name"]);
  const std::string store = config().GetString("learner.store_address");
  EXPECT_EQ(HostOf(store), absl::StrCat(set, "-0.", service))
      << "learner.store_address is not rank 0's name in the headless Service";
  EXPECT_EQ(HostOf(config().GetString("learner.address")), "0.0.0.0");

  const YAML::Node learner = ContainerRunning(PodSpec(learners_), "nbrl-learner");
  ASSERT_TRUE(Found(learner)) << "no container runs nbrl-learner";
  EXPECT_TRUE(HasPort(learner, PortOf(config().GetString("learner.address"))))
      << "no containerPort for learner.address";
  EXPECT_TRUE(HasPort(learner, PortOf(store))) << "no containerPort for the store";
}

TEST_F(K8sManifestTest, MetricsPortsAgreeWithConfigAndScrapeAnnotations) {
  EXPECT_TRUE(config().GetBool("metrics.enabled"));
  EXPECT_EQ(config().GetString("metrics.host"), "0.0.0.0");
  EXPECT_NE(config().GetInt("metrics.port"), 0) << "a fixed port to scrape";
  for (const auto& [workload, binary] : std::vector<std::pair<YAML::Node, std::string>>{
           {learners_, "nbrl-learner"}, {actors_, "nbrl-actor"}}) {
    const YAML::Node spec = PodSpec(workload);
    const YAML::Node annotations =
        workload["spec"]["template"]["metadata"]["annotations"];
    const std::string name = Str(workload["metadata"]["name"]);
    EXPECT_EQ(Str(annotations["prometheus.io/scrape"]), "true") << name;
    EXPECT_EQ(Str(annotations["prometheus.io/path"]), "/metrics") << name;
    const YAML::Node main = ContainerRunning(spec, binary);
    ASSERT_TRUE(Found(main)) << name << ": no container runs " << binary;
    absl::StatusOr<Exec> e = RunCommandOf(spec, main, name + "-0");
    ASSERT_TRUE(e.ok()) << e.status();
    absl::StatusOr<Config> resolved = Resolve(*e);
    ASSERT_TRUE(resolved.ok()) << resolved.status();
    const int port = static_cast<int>(resolved->GetInt("metrics.port"));
    EXPECT_EQ(Str(annotations["prometheus.io/port"]), absl::StrCat(port))
        << name << ": prometheus.io/port is not " << binary << "'s metrics.port";
    EXPECT_TRUE(HasPort(main, port)) << name << ": no containerPort " << port;
  }
}

TEST_F(K8sManifestTest, ActorPodSharesTheSandboxSocketAndSeparatesMetricsPorts) {
  const YAML::Node spec = PodSpec(actors_);
  const YAML::Node actor = ContainerRunning(spec, "nbrl-actor");
  const YAML::Node sandbox = ContainerRunning(spec, "nbrl-sandbox");
  ASSERT_TRUE(Found(actor)) << "no container runs nbrl-actor";
  ASSERT_TRUE(Found(sandbox)) << "no container runs nbrl-sandbox (the sidecar)";

  absl::StatusOr<Exec> se = RunCommandOf(spec, sandbox, "nbrl-actor-abc12-xyz34");
  ASSERT_TRUE(se.ok()) << se.status();
  EXPECT_EQ(se->positional, std::vector<std::string>{"serve"});
  absl::StatusOr<Config> sc = Resolve(*se);
  ASSERT_TRUE(sc.ok()) << sc.status();
  absl::StatusOr<Exec> ae = RunCommandOf(spec, actor, "nbrl-actor-abc12-xyz34");
  ASSERT_TRUE(ae.ok()) << ae.status();
  absl::StatusOr<Config> ac = Resolve(*ae);
  ASSERT_TRUE(ac.ok()) << ac.status();

  // One socket: where the sidecar serves is where the actor connects, in a volume
  // both mount.
  const std::string address = sc->GetString("sandbox.address");
  EXPECT_EQ(ac->GetString("actor.sandbox"), address);
  ASSERT_TRUE(absl::StartsWith(address, "unix:")) << address;
  const std::string socket = address.substr(5);
  const YAML::Node sm = MountFor(sandbox, socket);
  const YAML::Node am = MountFor(actor, socket);
  ASSERT_TRUE(Found(sm)) << "the sidecar mounts nothing at " << socket;
  ASSERT_TRUE(Found(am)) << "the actor mounts nothing at " << socket;
  EXPECT_EQ(Str(sm["name"]), Str(am["name"]));
  EXPECT_EQ(Str(sm["mountPath"]), Str(am["mountPath"]));
  EXPECT_TRUE(Found(VolumeNamed(spec, Str(sm["name"]))["emptyDir"]))
      << "the socket's volume is not the pod's emptyDir";

  // Both serve metrics in one network namespace: two ports, each declared.
  const int sandbox_port = static_cast<int>(sc->GetInt("metrics.port"));
  const int actor_port = static_cast<int>(ac->GetInt("metrics.port"));
  EXPECT_NE(sandbox_port, actor_port);
  EXPECT_TRUE(HasPort(sandbox, sandbox_port)) << "sidecar metrics " << sandbox_port;
  EXPECT_TRUE(HasPort(actor, actor_port)) << "actor metrics " << actor_port;

  // Each process's run.dir is writable where it runs.
  for (const auto& [c, resolved] : std::vector<std::pair<YAML::Node, const Config*>>{
           {actor, &*ac}, {sandbox, &*sc}}) {
    const YAML::Node m = MountFor(c, resolved->GetString("run.dir"));
    ASSERT_TRUE(Found(m)) << Str(c["name"]) << ": run.dir "
                          << resolved->GetString("run.dir") << " is on no volume";
    EXPECT_NE(Str(m["readOnly"]), "true") << Str(c["name"]) << ": run.dir is read-only";
  }
}

TEST_F(K8sManifestTest, ContainerCommandsDeriveRanksAndLearnerAddresses) {
  const int world = static_cast<int>(config().GetInt("learner.world_size"));
  const int shards = static_cast<int>(config().GetInt("actor.shards"));
  const std::string set = Str(learners()["metadata"]["name"]);
  const std::string service = Str(learners()["spec"]["serviceName"]);
  const int learner_port = PortOf(config().GetString("learner.address"));

  // Learners: process.rank is the ordinal of the StatefulSet pod.
  const YAML::Node learner = ContainerRunning(PodSpec(learners_), "nbrl-learner");
  ASSERT_TRUE(Found(learner));
  for (int ordinal = 0; ordinal < learners()["spec"]["replicas"].as<int>(); ++ordinal) {
    absl::StatusOr<Exec> e =
        RunCommandOf(PodSpec(learners_), learner, absl::StrCat(set, "-", ordinal));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->binary, "nbrl-learner");
    absl::StatusOr<Config> c = Resolve(*e);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->GetInt("process.rank"), ordinal);
  }

  // Actors: process.rank from the pod name, in [0, shards); the learner is rank
  // (rank mod world_size) at its headless Service name.
  const YAML::Node actor = ContainerRunning(PodSpec(actors_), "nbrl-actor");
  ASSERT_TRUE(Found(actor));
  const std::string deployment = Str(actors()["metadata"]["name"]);
  std::set<int64_t> ranks;
  for (const char* suffix :
       {"6d9c7f5b8-x2k9p", "6d9c7f5b8-q7w4z", "6d9c7f5b8-m3n8v", "6d9c7f5b8-a1b2c",
        "6d9c7f5b8-t5y6u", "6d9c7f5b8-h8j9k", "7f4b6c9d2-p0o9i", "7f4b6c9d2-l3k2j"}) {
    const std::string pod = absl::StrCat(deployment, "-", suffix);
    absl::StatusOr<Exec> e = RunCommandOf(PodSpec(actors_), actor, pod);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->binary, "nbrl-actor");
    absl::StatusOr<Config> c = Resolve(*e);
    ASSERT_TRUE(c.ok()) << pod << ": " << c.status();
    const int64_t rank = c->GetInt("process.rank");
    EXPECT_GE(rank, 0) << pod;
    EXPECT_LT(rank, shards) << pod;
    ranks.insert(rank);
    EXPECT_EQ(c->GetString("actor.learner"),
              absl::StrCat(set, "-", rank % world, ".", service, ":", learner_port))
        << pod;
    // Two runs of the same pod name take the same shard (a restarted container
    // continues its shard).
    absl::StatusOr<Exec> again = RunCommandOf(PodSpec(actors_), actor, pod);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->overrides, e->overrides) << pod;
  }
  EXPECT_GT(ranks.size(), 1u) << "every pod name gave the same process.rank";
}

TEST_F(K8sManifestTest, ConfigMapIsMountedWhereCommandsReadIt) {
  const std::string name = Str(config_map()["metadata"]["name"]);
  for (const YAML::Node& w : {learners_, actors_}) {
    const YAML::Node spec = PodSpec(w);
    for (const YAML::Node& c : Containers(spec)) {
      EXPECT_FALSE(ConfigMountPath(spec, c).empty())
          << Str(c["name"]) << " does not mount ConfigMap " << name;
    }
  }
}

TEST_F(K8sManifestTest, VolumesExistAndHoldTheConfiguredPaths) {
  std::set<std::string> claims;
  for (const YAML::Node& pvc : by_kind_["PersistentVolumeClaim"]) {
    claims.insert(Str(pvc["metadata"]["name"]));
  }
  std::set<std::string> config_maps;
  for (const YAML::Node& cm : by_kind_["ConfigMap"]) {
    config_maps.insert(Str(cm["metadata"]["name"]));
  }
  for (const YAML::Node& w : {learners_, actors_}) {
    const YAML::Node spec = PodSpec(w);
    const std::string name = Str(w["metadata"]["name"]);
    for (const YAML::Node& v : spec["volumes"]) {
      if (Found(v["persistentVolumeClaim"])) {
        EXPECT_TRUE(claims.count(Str(v["persistentVolumeClaim"]["claimName"])))
            << name << ": volume " << Str(v["name"]) << " names no claim";
      }
      if (Found(v["configMap"])) {
        EXPECT_TRUE(config_maps.count(Str(v["configMap"]["name"])))
            << name << ": volume " << Str(v["name"]) << " names no ConfigMap";
      }
    }
    for (const YAML::Node& c : Containers(spec)) {
      for (const YAML::Node& m : c["volumeMounts"]) {
        EXPECT_TRUE(Found(VolumeNamed(spec, Str(m["name"]))))
            << name << "/" << Str(c["name"]) << " mounts volume " << Str(m["name"])
            << ", which the pod does not have";
      }
    }
  }
  // The inputs are on a volume of each process that reads them, and the learner's
  // run.dir on a writable claim (checkpoints outlive the pods).
  const YAML::Node learner = ContainerRunning(PodSpec(learners_), "nbrl-learner");
  const YAML::Node actor = ContainerRunning(PodSpec(actors_), "nbrl-actor");
  const YAML::Node sandbox = ContainerRunning(PodSpec(actors_), "nbrl-sandbox");
  ASSERT_TRUE(Found(learner) && Found(actor) && Found(sandbox));
  const std::vector<std::pair<YAML::Node, std::string>> reads = {
      {learner, "model.path"},
      {actor, "model.path"},
      {actor, "actor.data"},
      {sandbox, "sandbox.tools.index"}};
  for (const auto& [c, key] : reads) {
    EXPECT_TRUE(Found(MountFor(c, config().GetString(key))))
        << Str(c["name"]) << ": " << key << " " << config().GetString(key)
        << " is on no volume";
  }
  const YAML::Node run = MountFor(learner, config().GetString("run.dir"));
  ASSERT_TRUE(Found(run)) << "the learner's run.dir is on no volume";
  EXPECT_NE(Str(run["readOnly"]), "true");
  EXPECT_TRUE(
      Found(VolumeNamed(PodSpec(learners_), Str(run["name"]))["persistentVolumeClaim"]))
      << "the learner's run.dir (checkpoints) is not on a PersistentVolumeClaim";
}

TEST_F(K8sManifestTest, ProbesUseDeclaredPortsAndGraceCoversShutdown) {
  for (const YAML::Node& w : {learners_, actors_}) {
    for (const YAML::Node& c : Containers(PodSpec(w))) {
      std::map<std::string, int> ports = PortsByName(c);
      for (const char* probe : {"readinessProbe", "livenessProbe", "startupProbe"}) {
        const YAML::Node p = c[probe];
        if (!p) continue;
        for (const char* kind : {"httpGet", "tcpSocket"}) {
          if (!p[kind]) continue;
          const std::string port = Str(p[kind]["port"]);
          int number = 0;
          EXPECT_TRUE(absl::SimpleAtoi(port, &number) ? HasPort(c, number)
                                                      : ports.count(port) > 0)
              << Str(c["name"]) << " " << probe << " uses port " << port
              << ", which the container does not declare";
        }
      }
    }
  }
  // Kubernetes' SIGKILL must not cut the graceful stop short.
  EXPECT_GE(PodSpec(learners_)["terminationGracePeriodSeconds"].as<int64_t>(),
            absl::ToInt64Seconds(config().GetDuration("learner.shutdown_grace")));
  EXPECT_GE(PodSpec(actors_)["terminationGracePeriodSeconds"].as<int64_t>(),
            absl::ToInt64Seconds(config().GetDuration("process.shutdown_grace")));
}

TEST_F(K8sManifestTest, PrepareJobWritesTheConfiguredInputsOnTheSameClaim) {
  absl::StatusOr<Rendered> r = Render(kubectl_, SourceDir() + "/deploy/k8s/prepare");
  ASSERT_TRUE(r.ok()) << r.status();
  std::set<std::string> claims;
  for (const YAML::Node& pvc : by_kind_["PersistentVolumeClaim"]) {
    claims.insert(Str(pvc["metadata"]["name"]));
  }
  int jobs = 0;
  for (const YAML::Node& job : r->docs) {
    if (Str(job["kind"]) != "Job") continue;
    ++jobs;
    const YAML::Node spec = PodSpec(job);
    for (const YAML::Node& v : spec["volumes"]) {
      if (Found(v["persistentVolumeClaim"])) {
        EXPECT_TRUE(claims.count(Str(v["persistentVolumeClaim"]["claimName"])))
            << "the Job's claim is not deploy/k8s's";
      }
    }
    const std::vector<YAML::Node> containers = Containers(spec);
    ASSERT_EQ(containers.size(), 1u);
    const std::string script = Str(containers[0]["command"][2]);
    for (const char* key : {"model.path", "actor.data", "sandbox.tools.index"}) {
      const std::string path = config().GetString(key);
      EXPECT_TRUE(absl::StrContains(script, path))
          << "the prepare Job does not write " << key << " " << path;
      EXPECT_TRUE(Found(MountFor(containers[0], path))) << path << " is on no volume";
    }
    for (const YAML::Node& m : containers[0]["volumeMounts"]) {
      EXPECT_TRUE(Found(VolumeNamed(spec, Str(m["name"])))) << Str(m["name"]);
    }
  }
  EXPECT_EQ(jobs, 1);
}

}  // namespace
}  // namespace nbrl
