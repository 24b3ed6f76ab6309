// nbrl: the command line. Subcommands are small functions in this folder; the
// processes of a run (nbrl-sandbox, nbrl-actor, nbrl-learner) are binaries of
// their own.
#include <iostream>
#include <map>
#include <string>

#include "cli/commands.h"
#include "common/process.h"

namespace {

void PrintUsage(std::ostream& out) {
  out << "nbrl: reinforcement learning for notebook agents\n\n"
         "Usage: nbrl COMMAND [options]\n\nCommands:\n";
  for (const auto& command : nbrl::cli::Commands()) {
    out << "  " << command.name << std::string(12 - command.name.size(), ' ')
        << command.summary << "\n";
  }
  out << "\nRun 'nbrl COMMAND --help' for a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  nbrl::common::KeepFreedMemoryForReuse();
  if (argc < 2) {
    PrintUsage(std::cerr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(std::cout);
    return 0;
  }
  if (name == "--version") name = "version";
  for (const auto& command : nbrl::cli::Commands()) {
    if (command.name == name) return command.run(argc - 1, argv + 1);
  }
  std::cerr << "nbrl: unknown command '" << name << "'\n\n";
  PrintUsage(std::cerr);
  return 2;
}
