// `nbrl init-model`: the starting point of a run trained from scratch. Trains a
// byte-level BPE tokenizer on the given texts (plus the agent's system prompts, so
// the action format tokenizes well) and writes a randomly initialised Qwen2-shaped
// checkpoint beside it: a Hugging Face folder that nbrl-learner, nbrl-actor and
// `nbrl eval` load like any other.
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/prompts.h"
#include "agent/task_family.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/command_line.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/bpe_trainer.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"

namespace nbrl::cli {
namespace {

constexpr char kUsage[] =
    "nbrl init-model: train a small tokenizer and write a random Qwen2-shaped model\n"
    "\n"
    "Usage: nbrl init-model --out DIR --text FILE[,FILE...] [options]\n"
    "\n"
    "  --text FILES      texts to train the tokenizer on; in a .jsonl file every\n"
    "                    string value of every line counts (e.g. a task world's\n"
    "                    corpus.jsonl and train.jsonl, or `nbrl eval` episodes)\n"
    "  --vocab N         vocabulary size, default 2048\n"
    "  --hidden N        hidden size, default 128\n"
    "  --layers N        decoder layers, default 2\n"
    "  --heads N         attention heads, default 4\n"
    "  --kv-heads N      key/value heads (GQA), default 2\n"
    "  --intermediate N  SwiGLU width, default 4 x hidden\n"
    "  --positions N     max_position_embeddings, default 8192\n"
    "  --seed N          initialisation seed, default 1\n"
    "\n"
    "Writes DIR/config.json, DIR/model.safetensors, DIR/tokenizer.json and\n"
    "DIR/tokenizer_config.json.\n";

// Every string in a JSON value, appended with newlines.
void CollectStrings(const nlohmann::json& j, std::string* out) {
  if (j.is_string()) {
    absl::StrAppend(out, j.get<std::string>(), "\n");
  } else if (j.is_array() || j.is_object()) {
    for (const auto& v : j) CollectStrings(v, out);
  }
}

}  // namespace

int InitModelCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.value_flags = {"--out",       "--text",  "--vocab",    "--hidden",
                         "--layers",    "--heads", "--kv-heads", "--intermediate",
                         "--positions", "--seed"};
  auto cl = common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl init-model: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout << kUsage;
    return 0;
  }
  std::vector<std::string> rest;
  auto flags = FlagValues(cl->positional, &rest);
  if (!rest.empty() || !cl->overrides.empty() || !flags.count("--out") ||
      !flags.count("--text")) {
    std::cerr << "nbrl init-model: --out DIR and --text FILES are required, nothing "
                 "is positional (try --help)\n";
    return 2;
  }
  int vocab = 2048, hidden = 128, layers = 2, heads = 4, kv_heads = 2, intermediate = 0,
      positions = 8192, seed = 1;
  if (!IntFlag(flags, "--vocab", &vocab, "init-model") ||
      !IntFlag(flags, "--hidden", &hidden, "init-model") ||
      !IntFlag(flags, "--layers", &layers, "init-model") ||
      !IntFlag(flags, "--heads", &heads, "init-model") ||
      !IntFlag(flags, "--kv-heads", &kv_heads, "init-model") ||
      !IntFlag(flags, "--intermediate", &intermediate, "init-model") ||
      !IntFlag(flags, "--positions", &positions, "init-model") ||
      !IntFlag(flags, "--seed", &seed, "init-model")) {
    return 2;
  }
  if (intermediate == 0) intermediate = 4 * hidden;
  if (heads == 0 || hidden % heads != 0) {
    std::cerr << "nbrl init-model: --hidden (" << hidden
              << ") must be a multiple of --heads (" << heads << ")\n";
    return 2;
  }

  // The tokenizer's training text.
  std::string text;
  const std::vector<std::string> paths =
      absl::StrSplit(flags["--text"], ',', absl::SkipEmpty());
  for (const std::string& path : paths) {
    auto contents = common::ReadFile(path);
    if (!contents.ok()) {
      std::cerr << "nbrl init-model: " << contents.status().message() << "\n";
      return 1;
    }
    if (absl::EndsWith(path, ".jsonl")) {
      int64_t line_no = 0;
      for (absl::string_view line : absl::StrSplit(*contents, '\n')) {
        ++line_no;
        if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
        auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
        if (j.is_discarded()) {
          std::cerr << "nbrl init-model: " << path << ":" << line_no
                    << ": not valid JSON\n";
          return 1;
        }
        CollectStrings(j, &text);
      }
    } else {
      absl::StrAppend(&text, *contents, "\n");
    }
  }
  for (const char* name : {"qa_search", "math", "code", "minimal"}) {
    auto family = agent::MakeTaskFamily(name);
    if (family.ok()) absl::StrAppend(&text, agent::SystemPrompt((*family)->tools(), 8));
  }
  model::BpeTrainerOptions bo;
  bo.vocab_size = vocab;
  auto files = model::TrainBpeTokenizer(text, bo);
  if (!files.ok()) {
    std::cerr << "nbrl init-model: " << files.status().message() << "\n";
    return files.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const std::string out = flags["--out"];
  auto tokenizer = [&]() -> absl::StatusOr<std::unique_ptr<model::Tokenizer>> {
    RETURN_IF_ERROR(model::WriteTokenizerFiles(*files, out));
    return model::Tokenizer::Load(out);
  }();
  if (!tokenizer.ok()) {
    std::cerr << "nbrl init-model: " << tokenizer.status().message() << "\n";
    return 1;
  }

  model::ModelConfig mc;
  mc.vocab_size = (*tokenizer)->vocab_size();
  mc.hidden_size = hidden;
  mc.intermediate_size = intermediate;
  mc.num_hidden_layers = layers;
  mc.num_attention_heads = heads;
  mc.num_key_value_heads = kv_heads;
  mc.head_dim = hidden / heads;
  mc.max_position_embeddings = positions;
  model::TransformerOptions to;
  to.seed = static_cast<uint64_t>(seed);
  auto m = model::Transformer::Create(mc, to);
  if (!m.ok()) {  // a shape the flags asked for that the model refuses
    std::cerr << "nbrl init-model: " << m.status().message() << "\n";
    return 2;
  }
  if (absl::Status saved = model::SaveTransformer(**m, out); !saved.ok()) {
    std::cerr << "nbrl init-model: " << saved.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << out << ": vocabulary " << mc.vocab_size << ", "
            << model::ParameterCount(mc) << " parameters (" << layers
            << " layers, hidden " << hidden << ", tokenizer trained on " << text.size()
            << " bytes)\n";
  return 0;
}

}  // namespace nbrl::cli
