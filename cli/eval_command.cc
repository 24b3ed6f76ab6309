// `nbrl eval`: a thin adapter over agent/evaluator.h with a real sandbox worker.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "actor/grpc_sandbox_client.h"
#include "agent/evaluator.h"
#include "agent/model_policy.h"
#include "agent/prompts.h"
#include "agent/scripted_policy.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/command_line.h"
#include "common/file_util.h"
#include "common/grpc_auth.h"
#include "common/nbrl_config.h"
#include "model/checkpoint.h"
#include "model/runtime.h"

namespace nbrl::cli {
namespace {

constexpr char kUsage[] =
    "nbrl eval: run a policy on a dataset through real sandboxes\n\n"
    "Usage: nbrl eval --policy scripted|CHECKPOINT_DIR --data FILE.jsonl\n"
    "                 --sandbox ADDRESS --out DIR [options]\n\n"
    "  --policy P        'scripted' (the task-world expert) or a checkpoint folder\n"
    "                    (config.json, *.safetensors, tokenizer.json)\n"
    "  --data FILE       nbrl JSONL questions\n"
    "  --sandbox ADDR    a running nbrl-sandbox: unix:PATH or host:port\n"
    "  --out DIR         writes DIR/episodes.jsonl and DIR/summary.json\n"
    "  --family F        task family: qa_search (default), math, code, minimal\n"
    "  --tokenizer DIR   tokenizer for the scripted policy (default: --policy's)\n"
    "  --limit N         only the first N questions\n"
    "  --samples K       rollouts per question (pass@k), default 1\n"
    "  --concurrency N   episodes at once, default 8\n"
    "  --max-steps N     actions per episode, default 8\n"
    "  --max-action-tokens N\n"
    "                    tokens one action may take, default 512 (as the actor's\n"
    "                    actor.max_action_tokens; evaluate with the RL run's value);\n"
    "                    at most a quarter of the model's context\n"
    "  --max-format-errors N\n"
    "                    end an episode after N malformed actions in a row,\n"
    "                    default 3 (as actor.max_format_errors)\n"
    "  --temperature T   sampling temperature of a model policy, default 1\n"
    "  --noise P         fault probability of the scripted policy, default 0\n"
    "  --faults LIST     the faults it draws from, comma-separated: field, check,\n"
    "                    copy (as actor.noise_faults), default all three\n"
    "  --seed N          sampling / noise seed, default 1\n"
    "  --threads N       CPU threads of the model math (libtorch and OpenBLAS),\n"
    "                    as actor.threads; default 0: the libraries' defaults\n"
    "  --config FILE     the run's YAML: its auth.* keys (token, TLS) reach a\n"
    "                    sandbox that requires them, and its actor.reward.*\n"
    "                    weights score the episodes; key=value overrides apply\n"
    "                    (e.g. auth.token_file=run/certs/token)\n";

struct Flags {
  std::map<std::string, std::string> values;
  bool Has(const std::string& k) const { return values.count(k) > 0; }
  std::string Get(const std::string& k, const std::string& def = "") const {
    auto it = values.find(k);
    return it == values.end() ? def : it->second;
  }
};

bool Number(const Flags& f, const std::string& name, double def, double* out) {
  *out = def;
  if (!f.Has(name)) return true;
  if (!absl::SimpleAtod(f.Get(name), out)) {
    std::cerr << "nbrl eval: " << name << " needs a number, got '" << f.Get(name)
              << "'\n";
    return false;
  }
  return true;
}

}  // namespace

int EvalCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.value_flags = {"--policy",
                         "--data",
                         "--sandbox",
                         "--out",
                         "--tokenizer",
                         "--family",
                         "--limit",
                         "--samples",
                         "--concurrency",
                         "--max-steps",
                         "--temperature",
                         "--noise",
                         "--faults",
                         "--seed",
                         "--max-action-tokens",
                         "--max-format-errors",
                         "--threads"};
  auto cl = common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl eval: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout << kUsage;
    return 0;
  }
  Flags f;
  for (const std::string& w : cl->positional) {
    size_t eq = w.find('=');
    f.values[w.substr(0, eq)] = eq == std::string::npos ? "" : w.substr(eq + 1);
  }
  for (const char* required : {"--policy", "--data", "--sandbox", "--out"}) {
    if (!f.Has(required)) {
      std::cerr << "nbrl eval: " << required << " is required (try --help)\n";
      return 2;
    }
  }
  // Credentials for the sandbox, from the run's configuration.
  auto config =
      common::Config::Load(common::NbrlConfigSchema(), cl->config_path, cl->overrides);
  if (!config.ok()) {
    std::cerr << "nbrl eval: " << config.status().message() << "\n";
    return 2;
  }
  auto auth = common::ClientAuth::Load(common::AuthOptionsFrom(*config));
  if (!auth.ok()) {
    std::cerr << "nbrl eval: " << auth.status().message() << "\n";
    return 2;
  }
  double limit, samples, concurrency, temperature, noise, seed;
  if (!Number(f, "--limit", 0, &limit) || !Number(f, "--samples", 1, &samples) ||
      !Number(f, "--concurrency", 8, &concurrency) ||
      !Number(f, "--temperature", 1.0, &temperature) ||
      !Number(f, "--noise", 0, &noise) || !Number(f, "--seed", 1, &seed)) {
    return 2;
  }
  // Episode limits, as the actor's actor.max_steps / max_action_tokens /
  // max_format_errors.
  int max_steps = 8, max_action_tokens = 512, max_format_errors = 3, threads = 0;
  for (auto [name, value, least] :
       {std::tuple<const char*, int*, int>{"--max-steps", &max_steps, 1},
        {"--max-action-tokens", &max_action_tokens, 8},
        {"--max-format-errors", &max_format_errors, 1},
        {"--threads", &threads, 0}}) {
    if (!IntFlag(f.values, name, value, "eval")) return 2;
    if (*value < least) {
      std::cerr << "nbrl eval: " << name << " needs a whole number from " << least
                << ", got " << *value << "\n";
      return 2;
    }
  }

  auto examples = agent::LoadJsonl(f.Get("--data"));
  if (!examples.ok()) {
    std::cerr << "nbrl eval: " << examples.status().message() << "\n";
    return 2;
  }
  if (limit > 0 && examples->size() > static_cast<size_t>(limit)) {
    examples->resize(static_cast<size_t>(limit));
  }
  const std::string policy_name = f.Get("--policy");
  const bool scripted = policy_name == "scripted";
  std::string tokenizer_dir = f.Get("--tokenizer", scripted ? "" : policy_name);
  if (tokenizer_dir.empty()) {
    std::cerr
        << "nbrl eval: the scripted policy needs --tokenizer DIR (to record token "
           "ids)\n";
    return 2;
  }
  auto tokenizer = model::Tokenizer::Load(tokenizer_dir);
  if (!tokenizer.ok()) {
    std::cerr << "nbrl eval: " << tokenizer.status().message() << "\n";
    return 2;
  }
  auto chat = model::ChatTemplate::Create(tokenizer->get());
  if (!chat.ok()) {
    std::cerr << "nbrl eval: " << chat.status().message() << "\n";
    return 2;
  }

  std::unique_ptr<model::Transformer> model;
  std::unique_ptr<agent::Policy> policy;
  if (scripted) {
    agent::ScriptedPolicyOptions so;
    so.noise = noise;
    so.seed = static_cast<uint64_t>(seed);
    if (f.Has("--faults")) {
      const std::vector<std::string> names =
          absl::StrSplit(f.Get("--faults"), ',', absl::SkipEmpty());
      auto faults = agent::ParseScriptedFaults(names);
      if (!faults.ok()) {
        std::cerr << "nbrl eval: --faults: " << faults.status().message() << "\n";
        return 2;
      }
      so.faults = *std::move(faults);
    }
    policy = std::make_unique<agent::ScriptedPolicy>(tokenizer->get(), so);
  } else {
    if (threads > 0) {
      if (absl::Status st = model::SetCpuThreads(threads); !st.ok()) {
        std::cerr << "nbrl eval: --threads: " << st.message() << "\n";
        return 2;
      }
    }
    auto loaded = model::LoadTransformer(policy_name);
    if (!loaded.ok()) {
      std::cerr << "nbrl eval: " << loaded.status().message() << "\n";
      return 2;
    }
    model = std::move(*loaded);
    std::cerr << "nbrl eval: " << model::DescribeRuntime(model::GetRuntimeInfo())
              << "\n";
    agent::ModelPolicyOptions mo;
    mo.max_episodes = static_cast<int>(concurrency);
    mo.temperature = temperature;
    mo.seed = static_cast<uint64_t>(seed);
    auto mp = agent::ModelPolicy::Create(model.get(), tokenizer->get(), mo);
    if (!mp.ok()) {
      std::cerr << "nbrl eval: " << mp.status().message() << "\n";
      return 2;
    }
    policy = std::move(*mp);
  }

  actor::GrpcSandboxOptions sbo;
  sbo.address = f.Get("--sandbox");
  sbo.client_id = "nbrl-eval";
  sbo.auth = *auth;
  auto sandbox = actor::GrpcSandboxClient::Create(sbo);
  if (!sandbox.ok()) {
    std::cerr << "nbrl eval: " << sandbox.status().message() << "\n";
    return 2;
  }
  if (auto health = (*sandbox)->Health(absl::Seconds(30)); !health.ok()) {
    std::cerr << "nbrl eval: the sandbox at " << sbo.address
              << " does not answer: " << health.status().message() << "\n";
    return 1;
  }

  auto family = agent::MakeTaskFamily(f.Get("--family", "qa_search"));
  if (!family.ok()) {
    std::cerr << "nbrl eval: " << family.status().message() << "\n";
    return 2;
  }
  agent::EvalOptions eo;
  eo.episode.family = family->get();
  eo.concurrency = static_cast<int>(concurrency);
  eo.samples = static_cast<int>(samples);
  eo.episode.max_steps = max_steps;
  eo.episode.system_prompt =
      agent::SystemPrompt((*family)->tools(), eo.episode.max_steps);
  eo.episode.context.context_tokens =
      model ? static_cast<int>(
                  std::min<int64_t>(model->config().max_position_embeddings, 32768))
            : 32768;
  eo.episode.context.max_action_tokens =
      std::min(max_action_tokens, eo.episode.context.context_tokens / 4);
  eo.episode.max_consecutive_format_errors = max_format_errors;
  eo.episode.rewards = agent::RewardOptionsFrom(*config);
  const bool tty = ::isatty(STDERR_FILENO);
  eo.progress = [tty](int done, int total, double em) {
    int width = 30, filled = total > 0 ? width * done / total : width;
    std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
    std::string line = absl::StrFormat("eval [%s] %d/%d episodes, running EM %.3f", bar,
                                       done, total, em);
    std::cerr << (tty ? "\r" : "") << line << (tty && done < total ? "" : "\n")
              << std::flush;
  };
  auto result = agent::Evaluate(tokenizer->get(), chat->get(), policy.get(),
                                sandbox->get(), *examples, eo);
  if (!result.ok()) {
    std::cerr << "nbrl eval: " << result.status().message() << "\n";
    return 1;
  }
  std::string out_dir = f.Get("--out");
  std::string lines;
  for (size_t i = 0; i < result->records.size(); ++i) {
    absl::StrAppend(&lines,
                    agent::EpisodeJsonLine(result->records[i], *result->examples[i],
                                           tokenizer->get()));
  }
  if (auto st = common::WriteFileAtomically(out_dir + "/episodes.jsonl", lines);
      !st.ok()) {
    std::cerr << "nbrl eval: " << st.message() << "\n";
    return 1;
  }
  std::string summary = agent::SummaryJson(result->summary);
  if (auto st = common::WriteFileAtomically(out_dir + "/summary.json", summary);
      !st.ok()) {
    std::cerr << "nbrl eval: " << st.message() << "\n";
    return 1;
  }
  const agent::EvalSummary& s = result->summary;
  std::cout << absl::StrFormat(
      "EM %.3f ± %.3f  F1 %.3f ± %.3f  pass@%d %.3f  steps %.2f\n", s.em, s.em_stderr,
      s.f1, s.f1_stderr, eo.samples, s.pass_at_k, s.mean_steps);
  for (const auto& [kind, em] : s.em_by_kind) {
    std::cout << absl::StrFormat("  %-12s EM %.3f (%d)\n", kind, em,
                                 s.count_by_kind.at(kind));
  }
  std::cout << "  endings:";
  for (const auto& [why, n] : s.endings) std::cout << " " << why << "=" << n;
  std::cout << "\n  wrote " << out_dir << "/episodes.jsonl and " << out_dir
            << "/summary.json\n";
  return 0;
}

}  // namespace nbrl::cli
