// Monitoring against a real run: Debian's Prometheus, configured from
// deploy/prometheus/prometheus.yml (only the target-file path and the scrape interval
// replaced), scrapes a tiny `nbrl launch` run. Every process's target must be up,
// and every metric and every query of every Grafana dashboard in
// deploy/grafana/dashboards must return samples, so dashboards never plot a metric
// that does not exist (or only appears after a rare event).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

namespace fs = std::filesystem;
using testutil::BinaryPath;
using testutil::Subprocess;

constexpr char kPrometheus[] = "/usr/bin/prometheus";
// The run directory as deploy/grafana/compose.yaml mounts it.
constexpr char kComposeTargets[] = "/nbrl/run/prometheus/*.json";

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// Every PromQL expression of a dashboard: panel targets' "expr", and template
// variables' label_values(METRIC, LABEL) as `count by (LABEL) (METRIC)`.
void CollectQueries(const nlohmann::json& j, std::vector<std::string>* out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      if (key == "expr" && value.is_string()) {
        out->push_back(value.get<std::string>());
      } else {
        CollectQueries(value, out);
      }
    }
  } else if (j.is_array()) {
    for (const auto& v : j) CollectQueries(v, out);
  }
}

void CollectVariableQueries(const nlohmann::json& board, std::vector<std::string>* out,
                            std::vector<std::string>* unknown) {
  static const std::regex label_values(
      R"(^\s*label_values\(\s*([a-z0-9_]+)\s*,\s*([a-z0-9_]+)\s*\)\s*$)");
  for (const auto& v : board["templating"]["list"]) {
    if (v.value("type", "") != "query") continue;
    const nlohmann::json& q = v["query"];
    const std::string text =
        q.is_string() ? q.get<std::string>() : q.value("query", std::string());
    std::smatch m;
    if (std::regex_match(text, m, label_values)) {
      out->push_back(absl::StrCat("count by (", m[2].str(), ") (", m[1].str(), ")"));
    } else {
      unknown->push_back(text);
    }
  }
}

// A dashboard query as Grafana sends it for a run in progress: template variables
// replaced by what they stand for.
std::string Instantiate(const std::string& query) {
  return absl::StrReplaceAll(query, {{"$__rate_interval", "1m"},
                                     {"$__interval", "5s"},
                                     {"$__range", "5m"},
                                     {"${run}", ".*"},
                                     {"$run", ".*"}});
}

class PrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kPrometheus)) {
      GTEST_SKIP() << kPrometheus
                   << " is missing (Debian package prometheus; deploy/setup.sh "
                      "installs it)";
    }
    const char* src = std::getenv("NBRL_SOURCE_DIR");
    ASSERT_NE(src, nullptr) << "run through ctest (it sets NBRL_SOURCE_DIR)";
    src_ = src;
    dir_ = tmp_.path();
    run_dir_ = dir_ + "/run";
  }

  // Reads a Prometheus API answer; null on failure (the reason in *error).
  nlohmann::json Api(const std::string& path, std::string* error) {
    auto body = testutil::HttpGet("127.0.0.1", prometheus_port_, path);
    if (!body.ok()) {
      *error = std::string(body.status().message());
      return nullptr;
    }
    nlohmann::json j = nlohmann::json::parse(*body, nullptr, false);
    if (!j.is_object() || j.value("status", "") != "success") {
      *error = body->substr(0, 500);
      return nullptr;
    }
    return j;
  }

  // Instant query; the result vector (empty on failure, reason in *error).
  nlohmann::json Query(const std::string& promql, std::string* error) {
    nlohmann::json j = Api("/api/v1/query?query=" + UrlEncode(promql), error);
    if (j.is_null()) return nlohmann::json::array();
    return j["data"]["result"];
  }

  testutil::TempDir tmp_{"nbrl-prometheus"};
  std::string src_, dir_, run_dir_;
  int prometheus_port_ = 0;
};

TEST_F(PrometheusTest, DashboardsPlotMetricsARealRunExports) {
  const absl::Time start = absl::Now();
  // Dashboards: every query, and the metric names they use.
  std::vector<std::string> queries;
  int dashboards = 0;
  for (const auto& entry :
       fs::directory_iterator(src_ + "/deploy/grafana/dashboards")) {
    if (entry.path().extension() != ".json") continue;
    auto text = common::ReadFile(entry.path().string());
    ASSERT_TRUE(text.ok()) << text.status();
    nlohmann::json board = nlohmann::json::parse(*text, nullptr, false);
    ASSERT_TRUE(board.is_object()) << entry.path() << " is not valid JSON";
    ++dashboards;
    CollectQueries(board, &queries);
    std::vector<std::string> unknown;
    CollectVariableQueries(board, &queries, &unknown);
    EXPECT_TRUE(unknown.empty()) << entry.path() << ": variable queries this test "
                                 << "cannot check: " << absl::StrJoin(unknown, "; ");
  }
  ASSERT_GE(dashboards, 4);
  std::set<std::string> names;
  const std::regex metric("nbrl_[a-z0-9_]+");
  for (const std::string& q : queries) {
    for (std::sregex_iterator it(q.begin(), q.end(), metric), end; it != end; ++it) {
      names.insert(it->str());
    }
  }
  ASSERT_GE(names.size(), 30u) << absl::StrJoin(names, " ");

  // Prometheus configuration: the shipped file with the run's target files and a
  // 1 s scrape interval; the jobs and relabelling as they are.
  auto shipped = common::ReadFile(src_ + "/deploy/prometheus/prometheus.yml");
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  ASSERT_TRUE(absl::StrContains(*shipped, kComposeTargets));
  ASSERT_TRUE(absl::StrContains(*shipped, "scrape_interval: 5s"));
  const std::string config =
      absl::StrReplaceAll(*shipped, {{kComposeTargets, run_dir_ + "/prometheus/*.json"},
                                     {"scrape_interval: 5s", "scrape_interval: 1s"}});
  ASSERT_TRUE(common::WriteFileAtomically(dir_ + "/prometheus.yml", config).ok());

  auto run = testutil::MakeTinyRun(dir_);
  ASSERT_TRUE(run.ok()) << run.status();
  const std::string run_yaml = dir_ + "/run.yaml";
  ASSERT_TRUE(common::WriteFileAtomically(
                  run_yaml, absl::StrCat("run:\n  dir: ", run_dir_,
                                         "\nmodel:\n  path: ", run->model,
                                         "\nmetrics:\n  enabled: true\n"
                                         "sandbox:\n  tools:\n    index: ",
                                         run->index,
                                         "\nlearner:\n  batch_groups: 2\n"
                                         "  lr: 0.001\n  max_staleness: 100\n"
                                         "  checkpoint_every: 2\n"
                                         "actor:\n  data: ",
                                         run->train,
                                         "\n  group_size: 2\n  groups_per_batch: 1\n"
                                         "  max_steps: 2\n  max_action_tokens: 32\n"
                                         "  context_tokens: 2048\n"
                                         "launch:\n  actors: 2\n"))
                  .ok());
  // The launcher on a fixed port (as a cluster would run it); its children pick
  // free ones. All of them announce themselves in run.dir/prometheus/.
  const int launch_port = testutil::FreePort();
  prometheus_port_ = testutil::FreePort();
  ASSERT_GT(launch_port, 0);
  ASSERT_GT(prometheus_port_, 0);
  auto launch = Subprocess::Start({BinaryPath("cli/nbrl"), "launch", "--config",
                                   run_yaml, "learner.max_steps=0",
                                   absl::StrCat("metrics.port=", launch_port)});
  ASSERT_TRUE(launch.ok()) << launch.status();
  auto prometheus = Subprocess::Start(
      {kPrometheus, "--config.file=" + dir_ + "/prometheus.yml",
       "--storage.tsdb.path=" + dir_ + "/tsdb",
       absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port_),
       "--log.level=warn"});
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();

  ASSERT_TRUE(testutil::WaitForSteps(run_dir_, 3, absl::Seconds(180)))
      << "the run took no 3 steps; launcher:\n"
      << (*launch)->stderr_text();

  // Scrapes are asynchronous: retry until everything is there, or 60 s.
  const std::set<std::string> instances = {"launch-0", "sandbox-0", "learner-0",
                                           "actor-0", "actor-1"};
  std::vector<std::string> problems;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  do {
    problems.clear();
    std::string error;
    nlohmann::json targets = Api("/api/v1/targets?state=active", &error);
    std::set<std::string> up;
    if (targets.is_null()) {
      problems.push_back("GET /api/v1/targets: " + error);
    } else {
      for (const auto& t : targets["data"]["activeTargets"]) {
        const std::string instance = t["labels"].value("instance", "");
        if (t.value("health", "") != "up") continue;
        up.insert(instance);
        if (instance == "launch-0" &&
            !absl::StrContains(t.value("scrapeUrl", ""),
                               absl::StrCat(":", launch_port, "/"))) {
          problems.push_back("launch-0 is not scraped at metrics.port " +
                             std::to_string(launch_port) + ": " + t.dump());
        }
      }
    }
    for (const std::string& i : instances) {
      if (!up.count(i)) problems.push_back("target " + i + " is not up");
    }
    for (const std::string& name : names) {
      error.clear();
      if (Query("count(" + name + ")", &error).empty()) {
        problems.push_back("no series of " + name + (error.empty() ? "" : ": ") +
                           error);
      }
    }
    for (const std::string& q : queries) {
      error.clear();
      if (Query(Instantiate(q), &error).empty()) {
        problems.push_back("no result for " + Instantiate(q) +
                           (error.empty() ? "" : ": ") + error);
      }
    }
    if (!problems.empty()) absl::SleepFor(absl::Seconds(2));
  } while (!problems.empty() && absl::Now() < deadline);
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems:\n"
                                << absl::StrJoin(problems, "\n");
  std::cerr << "dashboards: " << dashboards << ", queries: " << queries.size()
            << ", metrics: " << names.size() << " (" << absl::StrJoin(names, " ")
            << "); checked after " << absl::FormatDuration(absl::Now() - start) << "\n";

  ASSERT_TRUE((*launch)->Signal(SIGTERM).ok());
  auto status = (*launch)->Wait(absl::Seconds(200));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << (*launch)->stderr_text();
  ASSERT_TRUE((*prometheus)->Signal(SIGTERM).ok());
  status = (*prometheus)->Wait(absl::Seconds(30));
  EXPECT_TRUE(status.ok()) << status.status();
}

}  // namespace
}  // namespace nbrl
