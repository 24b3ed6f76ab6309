// Prometheus metrics: a registry passed to every component (so tests read it) and
// a small HTTP server answering GET /metrics with prometheus-cpp's text format.
//
// The server is ours rather than prometheus-cpp's civetweb exposer: Debian's
// civetweb starts its threads with a fixed 100 KiB stack, which glibc refuses in
// processes that link libtorch (its static TLS is larger), so the exposer could
// not start in nbrl-learner or nbrl-actor. Scrapes are served one at a time on a
// thread with a default stack.
//
// Names follow Prometheus conventions, checked when a family is created:
// `nbrl_<component>_<what>_<unit>`, counters end in `_total`, histograms in a base
// unit (`_seconds`, `_bytes`, `_tokens`, ...).
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   auto& steps = CounterFamily(*registry, "nbrl_learner_steps_total",
//                               "Optimizer steps taken.").Add({});
//   ASSIGN_OR_RETURN(auto server, MetricsServer::Start(options, registry));
//
// Thread safety: families and metrics are thread-safe (prometheus-cpp); the
// server is immutable after Start.
#ifndef NBRL_COMMON_METRICS_H_
#define NBRL_COMMON_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nbrl::common {

struct MetricsOptions {
  // Serve /metrics at all. Off: Start returns a server that listens nowhere.
  bool enabled = true;
  // Address to bind; "127.0.0.1" (default) serves this machine only, "0.0.0.0" lets
  // a cluster's Prometheus scrape it.
  std::string host = "127.0.0.1";
  // TCP port; 0 lets the OS choose (read it back with port()).
  int port = 0;
};

class MetricsServer {
 public:
  // Binds and starts serving `registry`. FailedPrecondition when the port is in use,
  // InvalidArgument for a bad host or port, Unavailable for other bind errors.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const MetricsOptions& options, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();

  // The port served (0 when disabled).
  int port() const { return port_; }
  // "host:port" for Prometheus targets; empty when disabled. A wildcard host
  // (0.0.0.0, ::) becomes this machine's host name, so that a Prometheus elsewhere
  // can reach the target.
  std::string address() const;
  // http://host:port/metrics; empty when disabled.
  std::string url() const;

 private:
  MetricsServer(std::string host, int port, int listen_fd,
                std::shared_ptr<prometheus::Registry> registry);
  void Serve();
  void Answer(int fd);

  // Constant after construction.
  const std::string host_;
  const int port_;
  const int listen_fd_;  // -1 when disabled
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// InvalidArgument unless `name` follows the conventions for `kind` ("counter",
// "gauge", "histogram").
absl::Status ValidateMetricName(const std::string& name, const std::string& kind);

// Family builders; a name that breaks the conventions is a programming error (CHECK).
prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help);
prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry,
                                                   const std::string& name,
                                                   const std::string& help);
prometheus::Family<prometheus::Histogram>& HistogramFamily(
    prometheus::Registry& registry, const std::string& name, const std::string& help);

// Exponential buckets from 100 us to ~100 s, for latencies in seconds.
std::vector<double> LatencyBucketsSeconds();
// Exponential buckets from `start` growing by `factor`, `count` of them.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// Adds the metrics every process exports: nbrl_build_info{version,component} = 1 and
// nbrl_process_start_time_seconds.
void AddProcessMetrics(prometheus::Registry& registry, const std::string& component);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_METRICS_H_
