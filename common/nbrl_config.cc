#include "common/nbrl_config.h"

namespace nbrl::common {
namespace {

void DeclareRun(ConfigSchema& s) {
  s.String("run.dir", "runs/latest",
           "Directory for this run's outputs: resolved configs, logs, checkpoints, "
           "metric targets. Created when missing.");
  s.String("run.id", "", "Name of the run; empty means the last component of run.dir.");
  s.Int("run.seed", 1, "Seed for every random choice of the run.", 0);
}

void DeclareProcess(ConfigSchema& s) {
  s.Int("process.rank", 0,
        "Index of this process among the processes of its kind (set by the "
        "launcher); it tags log lines and metrics.",
        0);
  s.Duration("process.shutdown_grace", absl::Seconds(30),
             "After SIGINT or SIGTERM, how long in-flight work may take to finish "
             "before the process exits anyway.");
}

void DeclareLog(ConfigSchema& s) {
  s.String("log.level", "info", "Lowest severity logged.",
           {"info", "warning", "error"});
  s.Int("log.verbosity", 0, "VLOG(n) lines with n <= verbosity are logged.", 0, 9);
}

void DeclareMetrics(ConfigSchema& s) {
  s.Bool("metrics.enabled", true, "Serve Prometheus metrics at /metrics.");
  s.String("metrics.host", "127.0.0.1",
           "Address the metrics server binds; 0.0.0.0 lets a cluster's Prometheus "
           "scrape it.");
  s.Int("metrics.port", 0,
        "Port of the metrics server; 0 lets the OS choose. The address is written "
        "to run.dir/prometheus/<process>.json for file-based discovery.",
        0, 65535);
}

ConfigSchema BuildSchema() {
  ConfigSchema s;
  DeclareRun(s);
  DeclareProcess(s);
  DeclareLog(s);
  DeclareMetrics(s);
  return s;
}

}  // namespace

const ConfigSchema& NbrlConfigSchema() {
  static const ConfigSchema* schema = new ConfigSchema(BuildSchema());
  return *schema;
}

}  // namespace nbrl::common
