#include "sandbox_worker/sandbox_metrics.h"

namespace nbrl::sandbox {

using common::CounterFamily;
using common::GaugeFamily;
using common::HistogramFamily;

SandboxMetrics::SandboxMetrics(prometheus::Registry& r)
    : registry(r),
      sessions_active(GaugeFamily(r, "nbrl_sandbox_sessions_active",
                                  "Sessions open (handed to a client, not yet closed).")
                          .Add({})),
      sessions_warm(GaugeFamily(r, "nbrl_sandbox_sessions_warm",
                                "Pre-started sessions waiting in the warm pool.")
                        .Add({})),
      sessions_started(CounterFamily(r, "nbrl_sandbox_sessions_started_total",
                                     "Sandbox processes started (pool and restarts).")
                           .Add({})),
      sessions_crashed(CounterFamily(r, "nbrl_sandbox_sessions_crashed_total",
                                     "Sessions whose process died or had to be killed.")
                           .Add({})),
      start_failures(CounterFamily(r, "nbrl_sandbox_start_failures_total",
                                   "Sandbox processes that failed to start.")
                         .Add({})),
      execute_latency(HistogramFamily(r, "nbrl_sandbox_execute_latency_seconds",
                                      "Wall time of Execute, as the worker saw it.")
                          .Add({}, common::LatencyBucketsSeconds())),
      open_latency(HistogramFamily(r, "nbrl_sandbox_open_latency_seconds",
                                   "Wall time of OpenSession (pool hit: microseconds).")
                       .Add({}, common::LatencyBucketsSeconds())),
      cell_timeouts(CounterFamily(r, "nbrl_sandbox_cell_timeouts_total",
                                  "Cells that ran past their timeout.")
                        .Add({})),
      limit_kills(CounterFamily(r, "nbrl_sandbox_limit_kills_total",
                                "Sessions killed, by kind (timeout, cpu_time, memory, "
                                "crashed, exited, protocol).")),
      tool_calls(
          CounterFamily(r, "nbrl_sandbox_tool_calls_total",
                        "Host-side tool calls, by tool and outcome (ok, error).")),
      tool_latency(HistogramFamily(r, "nbrl_sandbox_tool_latency_seconds",
                                   "Wall time of host-side tool calls, by tool.")) {
  // Every kind at 0 from the start, so dashboards show 0 rather than "no data".
  for (const char* kind :
       {"timeout", "cpu_time", "memory", "crashed", "exited", "protocol"}) {
    limit_kills.Add({{"kind", kind}});
  }
}

void SandboxMetrics::AddTools(const std::vector<std::string>& tools) {
  for (const std::string& tool : tools) {
    for (const char* outcome : {"ok", "error"}) {
      tool_calls.Add({{"tool", tool}, {"outcome", outcome}});
    }
    tool_latency.Add({{"tool", tool}}, common::LatencyBucketsSeconds());
  }
  // Calls of a tool the session lacks: always errors.
  tool_calls.Add({{"tool", "other"}, {"outcome", "error"}});
  tool_latency.Add({{"tool", "other"}}, common::LatencyBucketsSeconds());
}

void SandboxMetrics::RecordKill(const std::string& kind) {
  limit_kills.Add({{"kind", kind}}).Increment();
  sessions_crashed.Increment();
}

void SandboxMetrics::RecordToolCall(const std::string& tool, bool ok,
                                    absl::Duration latency) {
  tool_calls.Add({{"tool", tool}, {"outcome", ok ? "ok" : "error"}}).Increment();
  tool_latency.Add({{"tool", tool}}, common::LatencyBucketsSeconds())
      .Observe(absl::ToDoubleSeconds(latency));
}

}  // namespace nbrl::sandbox
