// The sandbox worker's Prometheus metrics (docs/metrics.md lists them).
//
// Thread safety: every method is thread-safe (prometheus-cpp metrics are).
#ifndef NBRL_SANDBOX_WORKER_SANDBOX_METRICS_H_
#define NBRL_SANDBOX_WORKER_SANDBOX_METRICS_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/metrics.h"

namespace nbrl::sandbox {

struct SandboxMetrics {
  explicit SandboxMetrics(prometheus::Registry& registry);

  // A limit killed a session; `kind` is the CellResult kill_reason.
  void RecordKill(const std::string& kind);
  void RecordToolCall(const std::string& tool, bool ok, absl::Duration latency);
  // Creates the tool series at 0: each of `tools` with outcomes ok and error, and
  // "other" (calls of tools a session lacks) with error.
  void AddTools(const std::vector<std::string>& tools);

  prometheus::Registry& registry;
  prometheus::Gauge& sessions_active;
  prometheus::Gauge& sessions_warm;
  prometheus::Counter& sessions_started;
  prometheus::Counter& sessions_crashed;
  prometheus::Counter& start_failures;
  prometheus::Histogram& execute_latency;
  prometheus::Histogram& open_latency;
  prometheus::Counter& cell_timeouts;
  prometheus::Family<prometheus::Counter>& limit_kills;
  prometheus::Family<prometheus::Counter>& tool_calls;
  prometheus::Family<prometheus::Histogram>& tool_latency;
};

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_SANDBOX_METRICS_H_
