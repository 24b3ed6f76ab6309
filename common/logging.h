// Process-wide logging set-up: glog (`LOG(INFO)`, `VLOG(n)`) with every line
// tagged by the process and rank, written to stderr.
//
//   I1122 19:30:01.123456 learner/0 learner.cc:88] step 12 loss 0.41
//
// Library code logs through glog and never writes to stdout.
#ifndef NBRL_COMMON_LOGGING_H_
#define NBRL_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace nbrl::common {

struct LogOptions {
  // Tag printed on every line: process kind and rank, e.g. "learner/0", "actor/3".
  std::string tag = "nbrl";
  // Lowest severity printed: "info", "warning", "error".
  std::string level = "info";
  // VLOG(n) lines with n <= verbosity are printed (0: none).
  int verbosity = 0;
};

// Initialises glog for this process (first call), or changes tag and levels (later
// calls). InvalidArgument for an unknown level name.
absl::Status InitLogging(const LogOptions& options);

// The tag given to InitLogging ("nbrl" before it is called).
std::string LogTag();

}  // namespace nbrl::common

#endif  // NBRL_COMMON_LOGGING_H_
