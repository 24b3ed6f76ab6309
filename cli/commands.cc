#include "cli/commands.h"

#include <iostream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/command_line.h"
#include "common/config.h"
#include "common/file_util.h"
#include "common/nbrl_config.h"
#include "common/version.h"
#include "model/runtime.h"
#include "model/tokenizer.h"

namespace nbrl::cli {

const std::vector<Command>& Commands() {
  static const std::vector<Command>* commands = new std::vector<Command>{
      {"config", "validate a configuration and print it resolved", ConfigCommand},
      {"version", "print the versions of nbrl and libtorch", VersionCommand},
      {"tokenize", "print the token ids of a text as JSON", TokenizeCommand},
      {"world", "generate the embedded task world (documents and questions)",
       WorldCommand},
      {"data", "convert question-answering datasets to nbrl JSONL", DataCommand},
      {"launch", "start and supervise a single-node run", LaunchCommand},
      {"ssh-launch", "run `nbrl launch` on every host of an inventory over ssh",
       SshLaunchCommand},
      {"init-model", "train a small tokenizer and write a random Qwen2-shaped model",
       InitModelCommand},
      {"eval", "evaluate a policy on a dataset through real sandboxes", EvalCommand},
      {"report", "compare two evaluations (before and after training)", ReportCommand},
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

int TokenizeCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.value_flags = {"--tokenizer", "--text"};
  options.bool_flags = {"--special"};
  absl::StatusOr<common::CommandLine> cl =
      common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl tokenize: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout
        << "nbrl tokenize: print the token ids of a text as JSON\n\n"
           "Usage: nbrl tokenize --tokenizer DIR [--text TEXT] [--special]\n\n"
           "  --tokenizer DIR  folder with tokenizer.json (and tokenizer_config.json)\n"
           "  --text TEXT      the text; without it, standard input is read whole\n"
           "  --special        match added/special tokens written in the text\n"
           "                   (\"<|im_end|>\" becomes one id); default: plain text\n";
    return 0;
  }
  std::string dir, text;
  bool has_text = false, special = false;
  for (const std::string& arg : cl->positional) {
    if (absl::StartsWith(arg, "--tokenizer=")) dir = arg.substr(12);
    if (absl::StartsWith(arg, "--text=")) {
      text = arg.substr(7);
      has_text = true;
    }
    if (arg == "--special") special = true;
  }
  if (dir.empty() || !cl->overrides.empty() || !cl->config_path.empty()) {
    std::cerr << "nbrl tokenize: needs --tokenizer DIR and takes no configuration "
                 "(try --help)\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer =
      model::Tokenizer::Load(dir);
  if (!tokenizer.ok()) {
    std::cerr << "nbrl tokenize: " << tokenizer.status().message() << "\n";
    return 1;
  }
  if (!has_text) {
    text.assign(std::istreambuf_iterator<char>(std::cin),
                std::istreambuf_iterator<char>());
  }
  std::vector<int32_t> ids = special ? (*tokenizer)->EncodeWithSpecialTokens(text)
                                     : (*tokenizer)->Encode(text);
  std::cout << "[" << absl::StrJoin(ids, ",") << "]\n";
  return 0;
}

}  // namespace nbrl::cli
