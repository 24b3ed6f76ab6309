// The BPE model of a byte-level tokenizer: turns one pre-token (raw bytes) into
// token ids by applying merges in rank order, with a cache of recent pieces.
#ifndef NBRL_MODEL_BPE_MODEL_H_
#define NBRL_MODEL_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace nbrl::model {

struct BpeModelOptions {
  // Token string (byte-level form, "Ġthe") -> id.
  absl::flat_hash_map<std::string, int32_t> vocab;
  // Merges in rank order (first = applied first), as token-string pairs.
  std::vector<std::pair<std::string, std::string>> merges;
  // Hugging Face's ignore_merges: a piece that is itself a vocabulary entry maps to
  // that id without merging (Llama 3 sets it).
  bool ignore_merges = false;
  // Pieces of at most this many bytes are cached; 0 disables the cache.
  size_t max_cached_piece_bytes = 256;
  // The cache is cleared when it reaches this many entries.
  size_t max_cache_entries = 1 << 18;
  // Names the file in error messages.
  std::string source = "tokenizer.json";
};

// Thread-safe: Encode is const; the cache is guarded by a mutex.
class BpeModel {
 public:
  // DataLoss naming the field when a byte's character is missing from the vocabulary
  // or a merge names a token (or produces one) that is not in it.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(BpeModelOptions options);

  // Appends the ids of one pre-token given as raw bytes.
  void Encode(absl::string_view piece, std::vector<int32_t>* ids) const;

 private:
  explicit BpeModel(BpeModelOptions options) : options_(std::move(options)) {}
  void Merge(absl::string_view piece, std::vector<int32_t>* ids) const;

  // Constant after construction.
  BpeModelOptions options_;
  std::array<int32_t, 256> byte_ids_{};
  // (left id << 32 | right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;

  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace nbrl::model

#endif  // NBRL_MODEL_BPE_MODEL_H_
