// KvCache: the keys and values of B running sequences, one pair of tensors per layer.
//
// Rows grow independently. Each forward chunk takes L new *slots* in every row
// (L = the longest row's chunk); a row with fewer new tokens marks the rest of its
// slots invalid (padding), and attention never looks at invalid slots. Rotary
// positions count a row's valid tokens only, so a row computes exactly what it would
// alone, whatever the other rows do. Slots are chronological, so causality is slot
// order. Compact() squeezes out padding; ClearRow() drops one row so it can be
// rebuilt from a trimmed context.
//
// Shapes: B rows, KV key/value heads, C slot capacity, S slots in use, hd head width.
//   keys/values of a layer: [B, KV, C, hd] (the first S slots are meaningful)
//   valid: [B, C] bool
//
// Not thread-safe. The tensors live on the device and dtype given at construction.
#ifndef NBRL_MODEL_KV_CACHE_H_
#define NBRL_MODEL_KV_CACHE_H_

#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "model/model_config.h"

namespace nbrl::model {

class KvCache {
 public:
  // `options` gives the dtype and device of the keys and values.
  KvCache(const ModelConfig& config, int64_t batch_size, torch::TensorOptions options);

  int64_t batch_size() const { return batch_size_; }
  // Slots in use (valid or padding), the same for every row.
  int64_t num_slots() const { return num_slots_; }
  // Valid tokens per row: the next token of row b gets rotary position lengths()[b].
  const std::vector<int64_t>& lengths() const { return lengths_; }
  // [B, S] bool: which slots in use hold a token.
  torch::Tensor valid() const { return valid_.narrow(1, 0, num_slots_); }

  // For Transformer::Forward. Begin() makes room for a chunk of `chunk` slots;
  // Store() writes layer `layer`'s keys/values of the chunk ([B, KV, L, hd]) and
  // returns that layer's keys and values of all slots including the chunk
  // ([B, KV, S + L, hd]); Commit() ends the chunk, `chunk_valid` [B, L] saying which
  // new slots hold tokens.
  void Begin(int64_t chunk);
  std::pair<torch::Tensor, torch::Tensor> Store(int64_t layer, const torch::Tensor& k,
                                                const torch::Tensor& v);
  void Commit(const torch::Tensor& chunk_valid);
  // Abandons the chunk begun (a forward that threw): the cache is as before Begin.
  void Rollback() { chunk_ = 0; }

  // Drops every row (keeps the memory).
  void Clear();
  // Drops one row: its slots become padding and its length 0, the other rows are
  // untouched. Append the row's (trimmed) context again to rebuild it.
  void ClearRow(int64_t row);
  // Keeps only the first `keep` valid tokens of a row (the rest become padding); the
  // other rows are untouched. keep >= lengths()[row] changes nothing.
  void TruncateRow(int64_t row, int64_t keep);
  // Moves each row's valid slots to the front, in order, and shrinks num_slots() to
  // the longest row. Results of later forwards are unchanged.
  void Compact();

 private:
  void Grow(int64_t capacity);

  // Constant after construction.
  const int64_t batch_size_;
  torch::TensorOptions options_;

  std::vector<torch::Tensor> keys_, values_;  // per layer [B, KV, C, hd]
  torch::Tensor valid_;                       // [B, C] bool
  int64_t capacity_ = 0;
  int64_t num_slots_ = 0;
  int64_t chunk_ = 0;  // slots of the chunk between Begin and Commit
  std::vector<int64_t> lengths_;
};

}  // namespace nbrl::model

#endif  // NBRL_MODEL_KV_CACHE_H_
