// Real processes: the command line, configuration errors, metrics and graceful
// shutdown of a binary built on common/process.h, and the `nbrl` CLI.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/nbrl_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testutil::BinaryPath;
using testutil::RunCommand;
using testutil::Subprocess;

const absl::Duration kStartTimeout = absl::Seconds(30);

std::string Probe() { return BinaryPath("tests/shutdown_probe"); }

int MetricsPort(const std::string& ready_line) {
  int port = 0;
  size_t eq = ready_line.find('=');
  EXPECT_TRUE(absl::SimpleAtoi(ready_line.substr(eq + 1), &port)) << ready_line;
  return port;
}

TEST(ProcessTest, SigtermFinishesInFlightWorkAndExitsZero) {
  testutil::TempDir tmp("nbrl-probe");
  const std::string& dir = tmp.path();
  auto p = Subprocess::Start({Probe(), "run.dir=" + dir, "process.rank=3"});
  ASSERT_TRUE(p.ok()) << p.status();
  auto ready = (*p)->WaitForLine("ready", kStartTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  int port = MetricsPort(*ready);
  ASSERT_GT(port, 0);

  // Metrics are served while it runs, and the target file points at them.
  auto body = testutil::HttpGet("127.0.0.1", port, "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("nbrl_probe_items_total"));
  EXPECT_THAT(*body, HasSubstr("nbrl_build_info{component=\"probe\""));
  auto target = common::ReadFile(dir + "/prometheus/probe-3.json");
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_THAT(*target, HasSubstr("127.0.0.1:" + std::to_string(port)));

  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  auto status = (*p)->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status)) << (*p)->stderr_text();
  EXPECT_EQ(WEXITSTATUS(*status), 0) << (*p)->stderr_text();
  auto done = common::ReadFile(dir + "/probe-done.txt");
  ASSERT_TRUE(done.ok()) << "in-flight work was not flushed: " << done.status();
  int items = 0;
  EXPECT_TRUE(absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(*done), &items));
  EXPECT_GT(items, 0);
  // Log lines carry the process tag; the stop is logged with its reason.
  EXPECT_THAT((*p)->stderr_text(),
              AllOf(HasSubstr(" probe/3 "), HasSubstr("shutdown requested (SIGTERM)"),
                    HasSubstr("stopped after SIGTERM")));
  // The resolved config is in the run directory; the target file is gone.
  auto resolved = common::ReadFile(dir + "/config/probe-3.yaml");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_THAT(*resolved, HasSubstr("rank: 3  # override"));
  EXPECT_FALSE(common::ReadFile(dir + "/prometheus/probe-3.json").ok());
}

TEST(ProcessTest, SigintAlsoStopsGracefully) {
  testutil::TempDir tmp("nbrl-probe");
  const std::string& dir = tmp.path();
  auto p = Subprocess::Start({Probe(), "run.dir=" + dir, "metrics.enabled=false"});
  ASSERT_TRUE(p.ok());
  auto ready = (*p)->WaitForLine("ready", kStartTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(MetricsPort(*ready), 0);
  ASSERT_TRUE((*p)->Signal(SIGINT).ok());
  auto status = (*p)->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(WEXITSTATUS(*status), 0) << (*p)->stderr_text();
  EXPECT_TRUE(common::ReadFile(dir + "/probe-done.txt").ok());
}

TEST(ProcessTest, SecondSignalStopsAStuckProcessAtOnce) {
  testutil::TempDir tmp("nbrl-probe");
  const std::string& dir = tmp.path();
  auto p = Subprocess::Start({Probe(), "run.dir=" + dir, "--stuck"});
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->WaitForLine("ready", kStartTimeout).ok());
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  // Wait for the first signal to be taken before sending the second.
  for (int i = 0;
       i < 200 && (*p)->stderr_text().find("shutdown requested") == std::string::npos;
       ++i) {
    (void)(*p)->WaitForLine("never printed", absl::Milliseconds(50));
  }
  // A second SIGTERM right away is the same request (a cluster manager and a
  // launcher both signalling): the shutdown goes on gracefully.
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  auto early = (*p)->Wait(absl::Seconds(1));
  EXPECT_FALSE(early.ok()) << "exited on a duplicate SIGTERM";
  EXPECT_THAT((*p)->stderr_text(), HasSubstr("the same stop request"));
  // Later, another one is an operator insisting.
  absl::SleepFor(absl::Seconds(2.5));
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  auto status = (*p)->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(WEXITSTATUS(*status), 128 + SIGTERM);
  EXPECT_THAT((*p)->stderr_text(), HasSubstr("second SIGTERM during shutdown"));
}

TEST(ProcessTest, GracePeriodBoundsAStuckShutdown) {
  testutil::TempDir tmp("nbrl-probe");
  const std::string& dir = tmp.path();
  auto p = Subprocess::Start(
      {Probe(), "run.dir=" + dir, "process.shutdown_grace=300ms", "--stuck"});
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->WaitForLine("ready", kStartTimeout).ok());
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  auto status = (*p)->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(WEXITSTATUS(*status), 128 + SIGTERM);
  EXPECT_THAT((*p)->stderr_text(),
              HasSubstr("did not finish within the shutdown grace"));
}

TEST(ProcessTest, HelpAndVersion) {
  auto help = RunCommand({Probe(), "--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_EQ(help->exit_code, 0);
  EXPECT_THAT(help->out, AllOf(HasSubstr("Usage: shutdown_probe"),
                               HasSubstr("--config"), HasSubstr("key=value")));
  auto keys = RunCommand({Probe(), "--help-config"});
  ASSERT_TRUE(keys.ok());
  EXPECT_THAT(keys->out, AllOf(HasSubstr("metrics.port"), HasSubstr("run.dir")));
  auto version = RunCommand({Probe(), "--version"});
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->exit_code, 0);
  EXPECT_THAT(version->out, HasSubstr("shutdown_probe 0."));
}

TEST(ProcessTest, ConfigErrorsExitTwoWithTheProblem) {
  testutil::TempDir tmp("nbrl-cfg");
  const std::string& dir = tmp.path();
  std::string path = dir + "/run.yaml";
  std::ofstream(path) << "metrics:\n  prot: 9400\nlog:\n  level: loud\n";
  auto r = RunCommand({Probe(), "--config", path});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->err, AllOf(HasSubstr(path + ":2: unknown key metrics.prot (did you "
                                             "mean metrics.port?)"),
                            HasSubstr(path + ":4: log.level: 'loud' is not one of")));

  auto missing = RunCommand({Probe(), "--config", dir + "/nope.yaml"});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->exit_code, 2);
  EXPECT_THAT(missing->err, HasSubstr("nope.yaml does not exist"));

  auto bad_override = RunCommand({Probe(), "metrics.port=http"});
  ASSERT_TRUE(bad_override.ok());
  EXPECT_EQ(bad_override->exit_code, 2);
  EXPECT_THAT(bad_override->err, HasSubstr("metrics.port: expected an integer"));

  auto bad_flag = RunCommand({Probe(), "--cofnig", path});
  ASSERT_TRUE(bad_flag.ok());
  EXPECT_EQ(bad_flag->exit_code, 2);
  EXPECT_THAT(bad_flag->err, HasSubstr("unknown flag '--cofnig'"));
}

TEST(ProcessTest, MetricsPortInUseIsAClearStartupError) {
  testutil::TempDir tmp("nbrl-probe");
  const std::string& dir = tmp.path();
  auto first = Subprocess::Start({Probe(), "run.dir=" + dir});
  ASSERT_TRUE(first.ok());
  auto ready = (*first)->WaitForLine("ready", kStartTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  int port = MetricsPort(*ready);
  auto second = RunCommand({Probe(), "run.dir=" + dir, "process.rank=1",
                            "metrics.port=" + std::to_string(port)});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->exit_code, 2);
  EXPECT_THAT(second->err, HasSubstr("metrics port " + std::to_string(port) +
                                     " on 127.0.0.1 is already in use"));
  ASSERT_TRUE((*first)->Signal(SIGTERM).ok());
  auto status = (*first)->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(ProcessTest, PrintConfigShowsResolvedValues) {
  auto r = RunCommand({Probe(), "log.verbosity=2", "--print-config"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_THAT(r->out, HasSubstr("verbosity: 2  # override"));
}

TEST(NbrlCliTest, ConfigCommandValidatesAndPrints) {
  std::string nbrl = BinaryPath("cli/nbrl");
  auto ok = RunCommand({nbrl, "config", "metrics.port=9400"});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->exit_code, 0) << ok->err;
  EXPECT_THAT(ok->out, HasSubstr("port: 9400  # override"));
  auto bad = RunCommand({nbrl, "config", "metrics.prot=1"});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_code, 2);
  EXPECT_THAT(bad->err, HasSubstr("did you mean metrics.port?"));
  auto unknown = RunCommand({nbrl, "frobnicate"});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->exit_code, 2);
  EXPECT_THAT(unknown->err, HasSubstr("unknown command 'frobnicate'"));
  auto version = RunCommand({nbrl, "version"});
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->exit_code, 0);
  EXPECT_THAT(version->out, AllOf(HasSubstr("nbrl 0."), HasSubstr("libtorch ")));
}

TEST(NbrlCliTest, ConfigurationDocIsUpToDate) {
  // docs/configuration.md embeds `nbrl config --markdown`; regenerate it with
  // deploy/gen-docs.sh when keys change.
  auto md = RunCommand({BinaryPath("cli/nbrl"), "config", "--markdown"});
  ASSERT_TRUE(md.ok());
  ASSERT_EQ(md->exit_code, 0);
  const char* src = std::getenv("NBRL_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  auto doc = common::ReadFile(std::string(src) + "/docs/configuration.md");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_THAT(*doc, HasSubstr(md->out))
      << "docs/configuration.md is stale: run deploy/gen-docs.sh";
}

}  // namespace
}  // namespace nbrl
