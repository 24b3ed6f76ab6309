#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace nbrl::common {
namespace {

using ::testing::HasSubstr;

TEST(MetricsServerTest, AWildcardHostIsAnnouncedByName) {
  MetricsOptions options;
  options.host = "0.0.0.0";
  auto server = MetricsServer::Start(options, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(server.ok()) << server.status();
  char name[256] = {};
  ASSERT_EQ(::gethostname(name, sizeof(name) - 1), 0);
  EXPECT_EQ((*server)->address(),
            std::string(name) + ":" + std::to_string((*server)->port()));
  // Still reachable on the loopback.
  EXPECT_TRUE(testutil::HttpGet("127.0.0.1", (*server)->port(), "/metrics").ok());
}

TEST(MetricsServerTest, ServesTheRegistryOverHttp) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& steps =
      CounterFamily(*registry, "nbrl_test_steps_total", "Steps taken.").Add({});
  auto& latency = HistogramFamily(*registry, "nbrl_test_step_seconds", "Step time.")
                      .Add({{"phase", "forward"}}, LatencyBucketsSeconds());
  AddProcessMetrics(*registry, "test");
  steps.Increment(3);
  latency.Observe(0.02);

  auto server = MetricsServer::Start(MetricsOptions{}, registry);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->url(),
            "http://127.0.0.1:" + std::to_string((*server)->port()) + "/metrics");

  auto body = testutil::HttpGet("127.0.0.1", (*server)->port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("# TYPE nbrl_test_steps_total counter"));
  EXPECT_THAT(*body, HasSubstr("nbrl_test_steps_total 3"));
  EXPECT_THAT(*body, HasSubstr("nbrl_test_step_seconds_count{phase=\"forward\"} 1"));
  EXPECT_THAT(*body, HasSubstr("nbrl_build_info{component=\"test\""));

  // Updates are visible on the next scrape.
  steps.Increment();
  body = testutil::HttpGet("127.0.0.1", (*server)->port(), "/metrics");
  ASSERT_TRUE(body.ok());
  EXPECT_THAT(*body, HasSubstr("nbrl_test_steps_total 4"));
}

TEST(MetricsServerTest, PortInUseIsAClearError) {
  // Hold a listening socket on an OS-chosen port.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);

  MetricsOptions options;
  options.port = port;
  auto server = MetricsServer::Start(options, std::make_shared<prometheus::Registry>());
  ::close(fd);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("metrics port " + std::to_string(port) +
                        " on 127.0.0.1 is already in use"));
}

TEST(MetricsServerTest, BadAddressesAreRejected) {
  MetricsOptions options;
  options.host = "not-an-ip";
  auto server = MetricsServer::Start(options, std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  options.host = "127.0.0.1";
  options.port = 70000;
  server = MetricsServer::Start(options, std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("not in [0, 65535]"));
}

TEST(MetricsServerTest, DisabledServerListensNowhere) {
  MetricsOptions options;
  options.enabled = false;
  auto server = MetricsServer::Start(options, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(server.ok());
  EXPECT_EQ((*server)->port(), 0);
  EXPECT_EQ((*server)->url(), "");
}

TEST(MetricNamesTest, ConventionsAreChecked) {
  EXPECT_TRUE(ValidateMetricName("nbrl_learner_steps_total", "counter").ok());
  EXPECT_TRUE(ValidateMetricName("nbrl_sandbox_execute_seconds", "histogram").ok());
  EXPECT_TRUE(ValidateMetricName("nbrl_sandbox_sessions_active", "gauge").ok());
  EXPECT_FALSE(ValidateMetricName("learner_steps_total", "counter").ok());
  EXPECT_FALSE(ValidateMetricName("nbrl_learner_steps", "counter").ok());
  EXPECT_FALSE(ValidateMetricName("nbrl_learner_depth_total", "gauge").ok());
  EXPECT_FALSE(ValidateMetricName("nbrl_sandbox_execute_ms", "histogram").ok());
  EXPECT_FALSE(ValidateMetricName("nbrl_Learner_steps_total", "counter").ok());
  EXPECT_FALSE(ValidateMetricName("nbrl__x_total", "counter").ok());
}

TEST(MetricNamesDeathTest, BadNameIsABug) {
  prometheus::Registry registry;
  EXPECT_DEATH(CounterFamily(registry, "nbrl_steps", "x"), "counters end in _total");
}

TEST(BucketsTest, LatencyBucketsSpanMicrosecondsToMinutes) {
  std::vector<double> b = LatencyBucketsSeconds();
  ASSERT_FALSE(b.empty());
  EXPECT_DOUBLE_EQ(b.front(), 1e-4);
  EXPECT_GT(b.back(), 60);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
}

}  // namespace
}  // namespace nbrl::common
