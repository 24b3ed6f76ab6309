// The inputs of a small real run, made on the spot: a task world with its search
// index, and a tiny random Qwen2-shaped checkpoint whose BPE tokenizer is trained
// on the world's corpus. For integration tests of the whole loop.
#ifndef NBRL_TESTS_TESTING_TINY_RUN_H_
#define NBRL_TESTS_TESTING_TINY_RUN_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbrl::testutil {

struct TinyRun {
  std::string dir;    // everything lives under it
  std::string model;  // checkpoint folder (config.json, safetensors, tokenizer)
  std::string train;  // train.jsonl
  std::string index;  // the sandbox tools' Xapian index
};

struct TinyRunOptions {
  int train_questions = 20;
  uint64_t seed = 2;
};

// Builds a TinyRun under `dir` (nbrl-sandbox must be built: it indexes the corpus).
absl::StatusOr<TinyRun> MakeTinyRun(const std::string& dir,
                                    const TinyRunOptions& options = {});

// The step records learner rank 0 has logged in <run_dir>/steps/rank-0.jsonl.
std::vector<nlohmann::json> StepRecords(const std::string& run_dir);
// Waits until there are at least `n` step records; false on timeout.
bool WaitForSteps(const std::string& run_dir, size_t n, absl::Duration timeout);

}  // namespace nbrl::testutil

#endif  // NBRL_TESTS_TESTING_TINY_RUN_H_
