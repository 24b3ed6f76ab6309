#include "sandbox_worker/tool_bridge.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "sandbox_worker/sandbox_metrics.h"

namespace nbrl::sandbox {

ToolBridge::ToolBridge(ToolBackend* backend, const ToolBridgeOptions& options,
                       std::set<std::string> enabled, SandboxMetrics* metrics)
    : backend_(backend),
      options_(options),
      enabled_(std::move(enabled)),
      metrics_(metrics) {}

nlohmann::json ToolBridge::Serve(const std::string& tool, const nlohmann::json& args,
                                 absl::Duration time_left, ToolCallRecord* record) {
  absl::Time start = absl::Now();
  record->tool = tool;
  absl::Status error;
  nlohmann::json result;
  if (backend_ == nullptr || enabled_.count(tool) == 0) {
    error = absl::FailedPreconditionError(
        absl::StrCat("tool ", tool, " is not enabled in this session"));
  } else if (calls_ >= options_.max_calls_per_session) {
    error = absl::ResourceExhaustedError(
        absl::StrCat("tool quota exhausted: ", options_.max_calls_per_session,
                     " calls per session"));
  } else if (!args.is_object()) {
    error = absl::InvalidArgumentError("tool arguments must be a JSON object");
  } else {
    ++calls_;
    absl::StatusOr<nlohmann::json> r =
        backend_->Call(tool, args, std::min(options_.call_timeout, time_left));
    if (r.ok()) {
      result = *std::move(r);
    } else {
      error = r.status();
    }
  }
  record->latency = absl::Now() - start;
  record->ok = error.ok();
  record->error = std::string(error.message());
  if (metrics_ != nullptr) {
    // A hostile cell can name any tool; keep the label set bounded.
    metrics_->RecordToolCall(enabled_.count(tool) ? tool : "other", record->ok,
                             record->latency);
  }
  if (!error.ok())
    return {{"op", "tool_result"}, {"ok", false}, {"error", record->error}};
  return {{"op", "tool_result"}, {"ok", true}, {"result", result}};
}

}  // namespace nbrl::sandbox
