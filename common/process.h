// The start and end every nbrl process shares. A binary's main() is
//
//   int main(int argc, char** argv) {
//     return nbrl::common::RunProgram(spec, argc, argv);
//   }
//
// RunProgram parses the command line (--config, key=value overrides, --help,
// --help-config, --print-config, --version), loads and validates the config,
// installs the SIGINT/SIGTERM handling before any thread starts, sets up logging
// tagged "<component>/<rank>", starts the metrics server, writes the resolved
// config to run.dir/config/<component>-<rank>.yaml and the metrics target to
// run.dir/prometheus/<component>-<rank>.json, and then calls spec.run. The files
// the auth.* keys name are read and checked first (a configuration error).
//
// spec.run must return once ctx.shutdown->requested() (after finishing or handing
// back its in-flight work); RunProgram then flushes and exits 0. Exit codes: 0 on
// success, 1 when run failed, 2 for a usage or configuration error, 128+N when
// killed by a second signal or the shutdown grace running out.
#ifndef NBRL_COMMON_PROCESS_H_
#define NBRL_COMMON_PROCESS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/config.h"
#include "common/metrics.h"
#include "common/shutdown.h"

namespace nbrl::common {

// What a running program gets from RunProgram. Everything outlives spec.run.
struct ProcessContext {
  const Config* config = nullptr;
  std::shared_ptr<prometheus::Registry> registry;
  ShutdownSignal* shutdown = nullptr;
  // The metrics server (port() is 0 when metrics are off).
  const MetricsServer* metrics = nullptr;
  // run.dir, created.
  std::string run_dir;
  // "<component>-<rank>", for file names; the log tag is "<component>/<rank>".
  std::string process_name;
  // Positional arguments and program-specific flags, as ParseCommandLine returns.
  std::vector<std::string> args;
};

struct ProgramSpec {
  // Binary name for usage and --version, e.g. "nbrl-learner".
  std::string name;
  // Component for log tags, file names and metric labels, e.g. "learner".
  std::string component;
  // One line for --help.
  std::string summary;
  // Extra --help text: positional arguments and program flags.
  std::string usage;
  // Program-specific flags (see CommandLineOptions).
  bool allow_positional = false;
  std::vector<std::string> value_flags;
  std::vector<std::string> bool_flags;
  // The program. A non-OK status is printed to stderr and exits 1.
  std::function<absl::Status(ProcessContext&)> run;
  // Optional checks of the configuration specific to this program (e.g. that a
  // server's TLS material is complete), given the positional arguments too. An
  // error is a configuration error: printed, exit 2, nothing started. The auth.*
  // files are checked for every program (common/grpc_auth.h) before this.
  std::function<absl::Status(const Config&, const std::vector<std::string>& args)>
      validate;
  // The configuration key of this program's shutdown grace (a Duration).
  std::string shutdown_grace_key = "process.shutdown_grace";
};

int RunProgram(const ProgramSpec& spec, int argc, char** argv);

// Makes glibc keep freed memory for reuse instead of returning every block over
// 128 KiB to the kernel: libtorch allocates and frees tensors of a few MiB per op,
// and each fresh mapping costs page faults and zeroing (the learner's step is
// ~1.5x faster with this; see docs/learner.md). RunProgram calls it; programs
// that do not go through RunProgram (nbrl, benchmarks) call it from main.
void KeepFreedMemoryForReuse();

// "[{targets, labels}]": a Prometheus file-based discovery entry for one process.
std::string PrometheusTarget(const std::string& address, const std::string& component,
                             int64_t rank, const std::string& run_id);
// run.id, or the last component of run.dir.
std::string RunId(const Config& config);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_PROCESS_H_
