// `nbrl world` and `nbrl data`: thin adapters over agent/task_world.h and
// agent/dataset.h.
#include <iostream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/dataset.h"
#include "agent/task_world.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/command_line.h"

namespace nbrl::cli {

int WorldCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.value_flags = {"--out",    "--seed", "--train",  "--val",  "--test",
                         "--people", "--orgs", "--cities", "--works"};
  auto cl = common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl world: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout
        << "nbrl world: generate the embedded task world\n\n"
           "Usage: nbrl world --out DIR [--seed N] [--train N] [--val N] [--test N]\n"
           "                  [--people N] [--orgs N] [--cities N] [--works N]\n\n"
           "Writes DIR/corpus.jsonl (documents for `nbrl-sandbox index`) and\n"
           "DIR/{train,val,test}.jsonl (questions: lookup, bridge, comparison,\n"
           "arithmetic). The same seed gives the same world.\n";
    return 0;
  }
  std::vector<std::string> rest;
  auto flags = FlagValues(cl->positional, &rest);
  if (!rest.empty() || !cl->overrides.empty() || !flags.count("--out")) {
    std::cerr << "nbrl world: --out DIR is required and nothing else is positional "
                 "(try --help)\n";
    return 2;
  }
  agent::TaskWorldOptions o;
  int seed = static_cast<int>(o.seed);
  if (!IntFlag(flags, "--seed", &seed, "world") ||
      !IntFlag(flags, "--train", &o.train_questions, "world") ||
      !IntFlag(flags, "--val", &o.val_questions, "world") ||
      !IntFlag(flags, "--test", &o.test_questions, "world") ||
      !IntFlag(flags, "--people", &o.people, "world") ||
      !IntFlag(flags, "--orgs", &o.organisations, "world") ||
      !IntFlag(flags, "--cities", &o.cities, "world") ||
      !IntFlag(flags, "--works", &o.works, "world")) {
    return 2;
  }
  o.seed = static_cast<uint64_t>(seed);
  auto world = agent::BuildTaskWorld(o);
  if (!world.ok()) {
    std::cerr << "nbrl world: " << world.status().message() << "\n";
    return 2;
  }
  if (auto st = agent::WriteTaskWorld(*world, flags["--out"]); !st.ok()) {
    std::cerr << "nbrl world: " << st.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << world->documents.size() << " documents and "
            << world->train.size() << "/" << world->val.size() << "/"
            << world->test.size() << " train/val/test questions to " << flags["--out"]
            << "\n";
  return 0;
}

int DataCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.allow_positional = true;
  options.value_flags = {"--format"};
  options.bool_flags = {"--skip-bad-lines"};
  auto cl = common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl data: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout
        << "nbrl data: convert question-answering datasets to nbrl JSONL\n\n"
           "Usage: nbrl data convert --format FORMAT IN OUT [--skip-bad-lines]\n\n"
           "  FORMAT: hotpotqa (JSON array), simpleqa (CSV), flashrag or search-r1\n"
           "          (JSONL with golden_answers), nbrl (check and rewrite)\n"
           "  --skip-bad-lines  report malformed lines and go on (default: stop at\n"
           "                    the first, naming its line)\n";
    return 0;
  }
  std::vector<std::string> rest;
  auto flags = FlagValues(cl->positional, &rest);
  if (rest.size() != 3 || rest[0] != "convert" || !flags.count("--format")) {
    std::cerr
        << "nbrl data: usage: nbrl data convert --format FORMAT IN OUT (try --help)\n";
    return 2;
  }
  agent::LoadOptions lo;
  if (flags.count("--skip-bad-lines")) lo.on_bad_line = agent::BadLinePolicy::kSkip;
  agent::LoadReport report;
  auto examples = agent::ConvertDataset(flags["--format"], rest[1], lo, &report);
  if (!examples.ok()) {
    std::cerr << "nbrl data: " << examples.status().message() << "\n";
    return 2;
  }
  if (auto st = agent::WriteJsonl(*examples, rest[2]); !st.ok()) {
    std::cerr << "nbrl data: " << st.message() << "\n";
    return 1;
  }
  std::cout << "converted " << report.loaded << " of " << report.lines
            << " examples to " << rest[2];
  if (!report.skipped.empty())
    std::cout << " (" << report.skipped.size() << " skipped)";
  std::cout << "\n";
  return 0;
}

}  // namespace nbrl::cli
