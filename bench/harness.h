// Side-by-side benchmarks: run the measured thing and a baseline (a peer such as
// the Python stack, or a limit such as a raw copy) in the same run, several
// alternating rounds, and report medians and their ratio. Machines here are noisy,
// so only ratios from one run are compared, never absolute times across runs.
//
//   SideBySideOptions o{.name = "decode_b1", .rounds = 5};
//   ASSIGN_OR_RETURN(SideBySideResult r, RunSideBySide(o, ours, python_peer));
//   std::cout << FormatResult(r);
//   RETURN_IF_ERROR(WriteResultJson(r, "bench-results/decode_b1.json"));
#ifndef NBRL_BENCH_HARNESS_H_
#define NBRL_BENCH_HARNESS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nbrl::bench {

struct SideBySideOptions {
  // Name of the benchmark, used in output and the JSON record.
  std::string name;
  // Timed rounds of each side; rounds alternate (A B, B A, ...) to cancel drift.
  int rounds = 5;
  // Untimed rounds of each side first (caches, page faults, JIT in peers).
  int warmup = 1;
  // What a probe returns: a time ("s": lower is better) or a rate (e.g.
  // "tokens/s": higher is better).
  std::string unit = "s";
  bool higher_is_better = false;
  // Labels for the two sides.
  std::string measured_label = "nbrl";
  std::string baseline_label = "baseline";
};

// One round of one side: returns the value measured (seconds, or a rate).
using Probe = std::function<absl::StatusOr<double>()>;

struct SideStats {
  std::vector<double> values;  // one per timed round, in order
  double median = 0;
  double min = 0;
  double max = 0;
};

struct SideBySideResult {
  SideBySideOptions options;
  SideStats measured;
  SideStats baseline;
  // How many times better the measured side is than the baseline (> 1: better):
  // baseline/measured for times, measured/baseline for rates.
  double ratio = 0;
};

// Runs both sides. The first probe error stops the run and is returned, naming the
// side and round. InvalidArgument for rounds < 1.
absl::StatusOr<SideBySideResult> RunSideBySide(const SideBySideOptions& options,
                                               const Probe& measured,
                                               const Probe& baseline);

SideStats Summarize(std::vector<double> values);

// Human-readable lines: medians, spread, ratio.
std::string FormatResult(const SideBySideResult& result);
// One JSON object with the options, every value and the ratio.
std::string ResultJson(const SideBySideResult& result);
// Writes ResultJson atomically, creating directories.
absl::Status WriteResultJson(const SideBySideResult& result, const std::string& path);

// A probe that runs `command` with /bin/sh -c and returns its wall time in seconds,
// or, when its stdout has a line `NBRL_BENCH_VALUE=<number>`, that number (so a
// command can report a rate it measured itself). A non-zero exit is an error that
// quotes the end of its output.
Probe CommandProbe(const std::string& command);

}  // namespace nbrl::bench

#endif  // NBRL_BENCH_HARNESS_H_
