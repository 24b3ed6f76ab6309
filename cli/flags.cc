#include "cli/flags.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace nbrl::cli {

std::map<std::string, std::string> FlagValues(const std::vector<std::string>& words,
                                              std::vector<std::string>* rest) {
  std::map<std::string, std::string> out;
  for (const std::string& w : words) {
    size_t eq = w.find('=');
    if (absl::StartsWith(w, "--") && eq != std::string::npos) {
      out[w.substr(0, eq)] = w.substr(eq + 1);
    } else if (absl::StartsWith(w, "--")) {
      out[w] = "";
    } else {
      rest->push_back(w);
    }
  }
  return out;
}

bool IntFlag(const std::map<std::string, std::string>& flags, const std::string& name,
             int* out, const char* command) {
  auto it = flags.find(name);
  if (it == flags.end()) return true;
  if (!absl::SimpleAtoi(it->second, out) || *out < 0) {
    std::cerr << "nbrl " << command << ": " << name
              << " needs a non-negative integer, got '" << it->second << "'\n";
    return false;
  }
  return true;
}

}  // namespace nbrl::cli
