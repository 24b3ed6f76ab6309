// Question-answering datasets: the JSONL layout nbrl trains on, converters from the
// layouts people already have, sharding across actors and a resumable cursor.
//
// nbrl JSONL, one example per line:
//   {"id": "q17", "question": "...", "answers": ["...", "..."], "metadata": {...}}
// `metadata` is optional and kept as JSON text (e.g. {"kind": "bridge"}).
//
// A malformed line is reported with its file and line number; by option it is
// skipped (and counted) or fatal. Nothing is dropped silently.
#ifndef NBRL_AGENT_DATASET_H_
#define NBRL_AGENT_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nbrl::agent {

struct Example {
  std::string id;
  std::string question;
  std::vector<std::string> answers;  // at least one
  std::string metadata_json = "{}";  // a JSON object
};

enum class BadLinePolicy { kFail, kSkip };

struct LoadOptions {
  // What to do with a line that is not a valid example.
  BadLinePolicy on_bad_line = BadLinePolicy::kFail;
};

struct LoadReport {
  int64_t lines = 0;   // non-blank lines read
  int64_t loaded = 0;  // examples returned
  // One message per skipped line: "FILE:LINE: why".
  std::vector<std::string> skipped;
};

// Reads nbrl JSONL. InvalidArgument naming file and line for a bad line (with
// kFail), or for duplicate ids; NotFound for a missing file.
absl::StatusOr<std::vector<Example>> LoadJsonl(const std::string& path,
                                               const LoadOptions& options = {},
                                               LoadReport* report = nullptr);
// Parses one line (for converters and tests). `where` prefixes errors.
absl::StatusOr<Example> ParseExampleLine(const std::string& line,
                                         const std::string& where);
// Writes examples as nbrl JSONL, atomically.
absl::Status WriteJsonl(const std::vector<Example>& examples, const std::string& path);
std::string ExampleToJson(const Example& example);

// Converters from common layouts.
//  - "hotpotqa": the HotpotQA JSON file (an array of {_id, question, answer, type,
//    level, ...}); type and level go into metadata.
//  - "simpleqa": the SimpleQA CSV (columns metadata, problem, answer); ids are
//    "simpleqa-<row>".
//  - "flashrag": FlashRAG / Search-R1 JSONL ({id, question, golden_answers[],
//    metadata?, data_source?}).
absl::StatusOr<std::vector<Example>> ConvertDataset(const std::string& format,
                                                    const std::string& path,
                                                    const LoadOptions& options = {},
                                                    LoadReport* report = nullptr);

// The examples of shard `index` of `count` (every count-th example), in order.
// InvalidArgument unless 0 <= index < count.
absl::StatusOr<std::vector<Example>> Shard(const std::vector<Example>& examples,
                                           int index, int count);

// Position in an endless, per-epoch shuffled walk over a shard.
struct DataCursor {
  uint64_t epoch = 0;
  uint64_t position = 0;  // within the epoch
};

// Walks a shard in a seeded order that changes every epoch; the same seed and
// cursor always give the same next example, so a restarted actor resumes exactly.
// Not thread-safe.
class ExampleStream {
 public:
  // FailedPrecondition-free: `examples` must not be empty (CHECK).
  ExampleStream(std::vector<Example> examples, uint64_t seed, DataCursor start = {});
  const Example& Next();
  DataCursor cursor() const { return cursor_; }
  size_t size() const { return examples_.size(); }

 private:
  void Shuffle();

  std::vector<Example> examples_;
  uint64_t seed_;
  DataCursor cursor_;
  std::vector<size_t> order_;  // permutation for cursor_.epoch
};

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_DATASET_H_
