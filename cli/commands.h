// The subcommands of the `nbrl` binary.
#ifndef NBRL_CLI_COMMANDS_H_
#define NBRL_CLI_COMMANDS_H_

#include <functional>
#include <string>
#include <vector>

namespace nbrl::cli {

struct Command {
  std::string name;
  std::string summary;
  // argv[0] is the command name; returns the exit code.
  std::function<int(int argc, char** argv)> run;
};

const std::vector<Command>& Commands();

// `nbrl config [--config FILE] [key=value ...] [--markdown] [--out FILE]`:
// validates a configuration and prints it resolved.
int ConfigCommand(int argc, char** argv);
// `nbrl version`: nbrl, libtorch and CUDA versions.
int VersionCommand(int argc, char** argv);
// `nbrl tokenize --tokenizer DIR [--text TEXT] [--special]`: prints the token ids
// of TEXT (or of standard input) as a JSON array.
int TokenizeCommand(int argc, char** argv);

// `nbrl world --out DIR [...]`: generates the embedded task world.
int WorldCommand(int argc, char** argv);
// `nbrl data convert --format F IN OUT`: converts datasets to nbrl JSONL.
int DataCommand(int argc, char** argv);

// `nbrl launch [--config FILE] [key=value ...]`: starts and supervises a
// single-node run (sandbox workers, learner ranks, actors).
int LaunchCommand(int argc, char** argv);

// `nbrl ssh-launch --inventory HOSTS.yaml [--config FILE] [key=value ...]`: runs
// one `nbrl launch` per host of the inventory over ssh (a multi-node run).
int SshLaunchCommand(int argc, char** argv);

// `nbrl init-model --out DIR --text FILE...`: trains a small BPE tokenizer and
// writes a randomly initialised Qwen2-shaped checkpoint.
int InitModelCommand(int argc, char** argv);

// `nbrl eval --policy P --data F --sandbox A --out DIR`: evaluates a policy.
int EvalCommand(int argc, char** argv);

// `nbrl report --before P --after P --out DIR [--steps FILE]`: compares two
// `nbrl eval` summaries (table, report.md, report.json, curve.tsv).
int ReportCommand(int argc, char** argv);

}  // namespace nbrl::cli

#endif  // NBRL_CLI_COMMANDS_H_
