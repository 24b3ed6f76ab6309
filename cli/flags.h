// Small flag helpers shared by the `nbrl` subcommands.
#ifndef NBRL_CLI_FLAGS_H_
#define NBRL_CLI_FLAGS_H_

#include <map>
#include <string>
#include <vector>

namespace nbrl::cli {

// "--name=value" words from ParseCommandLine, by name ("--name" alone maps to "");
// other words go to `rest`.
std::map<std::string, std::string> FlagValues(const std::vector<std::string>& words,
                                              std::vector<std::string>* rest);

// Reads flag `name` as a non-negative integer into `out` when present; prints an
// error naming `command` and returns false for a bad value.
bool IntFlag(const std::map<std::string, std::string>& flags, const std::string& name,
             int* out, const char* command);

}  // namespace nbrl::cli

#endif  // NBRL_CLI_FLAGS_H_
