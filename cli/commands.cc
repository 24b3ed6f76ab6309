#include "cli/commands.h"

#include <iostream>

#include "absl/strings/match.h"
#include "common/command_line.h"
#include "common/config.h"
#include "common/file_util.h"
#include "common/nbrl_config.h"
#include "common/version.h"
#include "model/runtime.h"

namespace nbrl::cli {

const std::vector<Command>& Commands() {
  static const std::vector<Command>* commands = new std::vector<Command>{
      {"config", "validate a configuration and print it resolved", ConfigCommand},
      {"version", "print the versions of nbrl and libtorch", VersionCommand},
  };
  return *commands;
}

int ConfigCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.bool_flags = {"--markdown"};
  options.value_flags = {"--out"};
  absl::StatusOr<common::CommandLine> cl =
      common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl config: " << cl.status().message() << "\n";
    return 2;
  }
  const common::ConfigSchema& schema = common::NbrlConfigSchema();
  if (cl->help) {
    std::cout << "nbrl config: validate a configuration and print it resolved\n\n"
                 "Usage: nbrl config [--config FILE] [key=value ...] [--out FILE]\n"
                 "       nbrl config --markdown\n\n"
                 "  --config FILE  the run's YAML file (default: built-in defaults)\n"
                 "  key=value      overrides, applied after the file\n"
                 "  --out FILE     also write the resolved configuration to FILE\n"
                 "  --markdown     print the reference of every key as Markdown\n"
                 "  --help-config  print the reference of every key as text\n\n"
                 "Exits 2 and names every problem when the configuration is invalid.\n";
    return 0;
  }
  if (cl->help_config) {
    std::cout << schema.Describe();
    return 0;
  }
  bool markdown = false;
  std::string out_path;
  for (const std::string& arg : cl->positional) {
    if (arg == "--markdown") markdown = true;
    if (absl::StartsWith(arg, "--out=")) out_path = arg.substr(6);
  }
  if (markdown) {
    std::cout << schema.DescribeMarkdown();
    return 0;
  }
  absl::StatusOr<common::Config> config =
      common::Config::Load(schema, cl->config_path, cl->overrides);
  if (!config.ok()) {
    std::cerr << "nbrl config: " << config.status().message() << "\n";
    return 2;
  }
  std::cout << config->ToYaml();
  if (!out_path.empty()) {
    if (absl::Status st = config->WriteResolved(out_path); !st.ok()) {
      std::cerr << "nbrl config: " << st.message() << "\n";
      return 1;
    }
  }
  return 0;
}

int VersionCommand(int argc, char** argv) {
  (void)argv;
  if (argc > 1) {
    std::cerr << "nbrl version: takes no arguments\n";
    return 2;
  }
  std::cout << "nbrl " << kVersion << "\n"
            << model::DescribeRuntime(model::GetRuntimeInfo()) << "\n";
  return 0;
}

}  // namespace nbrl::cli
