// The command line every nbrl binary accepts:
//
//   PROGRAM [--config FILE] [key=value ...] [--print-config] [--help]
//           [--help-config] [--version] [ARGS ...]
//
// `key=value` words are configuration overrides; other words are positional
// arguments (only for programs that take them).
#ifndef NBRL_COMMON_COMMAND_LINE_H_
#define NBRL_COMMON_COMMAND_LINE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nbrl::common {

struct CommandLine {
  std::string config_path;             // --config FILE; empty: defaults only
  std::vector<std::string> overrides;  // key=value, in order
  std::vector<std::string> positional;
  bool help = false;
  bool help_config = false;
  bool version = false;
  bool print_config = false;
};

struct CommandLineOptions {
  // Accept words that are neither flags nor key=value.
  bool allow_positional = false;
  // Extra flags (with a value, "--name VALUE" or "--name=VALUE") this program
  // accepts; they are returned as positional "--name=VALUE" words.
  std::vector<std::string> value_flags;
  // Extra flags without a value, returned as positional "--name" words.
  std::vector<std::string> bool_flags;
};

// Parses argv[1..argc). InvalidArgument naming the word for an unknown flag, a
// missing flag value or an unexpected positional argument.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const CommandLineOptions& options = {});

}  // namespace nbrl::common

#endif  // NBRL_COMMON_COMMAND_LINE_H_
