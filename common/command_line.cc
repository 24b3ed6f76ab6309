#include "common/command_line.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace nbrl::common {
namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// "a.b=c": a key made of name characters before the first '='.
bool LooksLikeOverride(const std::string& word) {
  size_t eq = word.find('=');
  if (eq == std::string::npos || eq == 0 || word[0] == '-') return false;
  for (size_t i = 0; i < eq; ++i) {
    char c = word[i];
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const CommandLineOptions& options) {
  CommandLine cl;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (only_positional || word == "-" || !absl::StartsWith(word, "-")) {
      if (!only_positional && LooksLikeOverride(word)) {
        cl.overrides.push_back(word);
      } else if (options.allow_positional) {
        cl.positional.push_back(word);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "unexpected argument '", word,
            "': configuration overrides are written key=value (try --help)"));
      }
      continue;
    }
    if (word == "--") {
      only_positional = true;
      continue;
    }
    std::string name = word, value;
    bool has_value = false;
    if (size_t eq = word.find('='); eq != std::string::npos) {
      name = word.substr(0, eq);
      value = word.substr(eq + 1);
      has_value = true;
    }
    auto take_value = [&]() -> absl::Status {
      if (has_value) return absl::OkStatus();
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      value = argv[++i];
      return absl::OkStatus();
    };
    auto no_value = [&]() -> absl::Status {
      if (has_value) {
        return absl::InvalidArgumentError(absl::StrCat(name, " takes no value"));
      }
      return absl::OkStatus();
    };
    absl::Status st;
    if (name == "--config" || name == "-c") {
      st = take_value();
      cl.config_path = value;
      if (st.ok() && value.empty()) {
        st = absl::InvalidArgumentError("--config needs a file name");
      }
    } else if (name == "--help" || name == "-h") {
      st = no_value();
      cl.help = true;
    } else if (name == "--help-config") {
      st = no_value();
      cl.help_config = true;
    } else if (name == "--version") {
      st = no_value();
      cl.version = true;
    } else if (name == "--print-config") {
      st = no_value();
      cl.print_config = true;
    } else if (Contains(options.value_flags, name)) {
      st = take_value();
      cl.positional.push_back(absl::StrCat(name, "=", value));
    } else if (Contains(options.bool_flags, name)) {
      st = no_value();
      cl.positional.push_back(name);
    } else {
      st = absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", name, "' (try --help)"));
    }
    if (!st.ok()) return st;
  }
  return cl;
}

}  // namespace nbrl::common
