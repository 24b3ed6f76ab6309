#include "tests/testing/tiny_run.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/task_world.h"
#include "common/status_macros.h"
#include "model/bpe_trainer.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"
#include "tests/testing/subprocess.h"

namespace nbrl::testutil {

absl::StatusOr<TinyRun> MakeTinyRun(const std::string& dir,
                                    const TinyRunOptions& options) {
  TinyRun run;
  run.dir = dir;
  agent::TaskWorldOptions wo;
  wo.seed = options.seed;
  wo.people = 20;
  wo.organisations = 8;
  wo.cities = 6;
  wo.works = 8;
  wo.train_questions = options.train_questions;
  wo.val_questions = 0;
  wo.test_questions = 0;
  ASSIGN_OR_RETURN(agent::TaskWorld world, agent::BuildTaskWorld(wo));
  RETURN_IF_ERROR(agent::WriteTaskWorld(world, dir));
  run.train = dir + "/train.jsonl";
  run.index = dir + "/index";
  ASSIGN_OR_RETURN(RunResult index,
                   RunCommand({BinaryPath("sandbox_worker/nbrl-sandbox"), "index",
                               dir + "/corpus.jsonl", run.index, "run.dir=" + dir,
                               "metrics.enabled=false"}));
  if (index.exit_code != 0) {
    return absl::InternalError(absl::StrCat("nbrl-sandbox index failed:\n", index.err));
  }

  std::string corpus;
  for (const auto& d : world.documents) absl::StrAppend(&corpus, d.text);
  model::BpeTrainerOptions bo;
  bo.vocab_size = 600;
  ASSIGN_OR_RETURN(model::TokenizerFiles files, model::TrainBpeTokenizer(corpus, bo));
  run.model = dir + "/model";
  RETURN_IF_ERROR(model::WriteTokenizerFiles(files, run.model));
  ASSIGN_OR_RETURN(std::unique_ptr<model::Tokenizer> tok,
                   model::Tokenizer::Load(run.model));
  model::ModelConfig mc;
  mc.vocab_size = tok->vocab_size();
  mc.hidden_size = 32;
  mc.intermediate_size = 64;
  mc.num_hidden_layers = 1;
  mc.num_attention_heads = 4;
  mc.num_key_value_heads = 2;
  mc.head_dim = 8;
  mc.max_position_embeddings = 4096;
  ASSIGN_OR_RETURN(std::unique_ptr<model::Transformer> m,
                   model::Transformer::Create(mc, {}));
  RETURN_IF_ERROR(model::SaveTransformer(*m, run.model));
  return run;
}

std::vector<nlohmann::json> StepRecords(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/steps/rank-0.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(j);
  }
  return out;
}

bool WaitForSteps(const std::string& run_dir, size_t n, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (StepRecords(run_dir).size() < n) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return true;
}

}  // namespace nbrl::testutil
