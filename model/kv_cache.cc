#include "model/kv_cache.h"

#include <algorithm>

#include "glog/logging.h"

namespace nbrl::model {

KvCache::KvCache(const ModelConfig& config, int64_t batch_size,
                 torch::TensorOptions options)
    : batch_size_(batch_size), options_(options), lengths_(batch_size, 0) {
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::vector<int64_t> sizes = {batch_size, config.num_key_value_heads, 0,
                                        config.head_dim};
    keys_.push_back(torch::empty(sizes, options));
    values_.push_back(torch::empty(sizes, options));
  }
  valid_ = torch::zeros({batch_size, 0}, options.dtype(torch::kBool));
}

void KvCache::Grow(int64_t capacity) {
  auto grow = [&](const torch::Tensor& t) {
    auto sizes = t.sizes().vec();
    sizes[2] = capacity;
    torch::Tensor bigger = torch::zeros(sizes, t.options());
    bigger.narrow(2, 0, num_slots_).copy_(t.narrow(2, 0, num_slots_));
    return bigger;
  };
  for (size_t i = 0; i < keys_.size(); ++i) {
    keys_[i] = grow(keys_[i]);
    values_[i] = grow(values_[i]);
  }
  torch::Tensor valid = torch::zeros({batch_size_, capacity}, valid_.options());
  valid.narrow(1, 0, num_slots_).copy_(valid_.narrow(1, 0, num_slots_));
  valid_ = valid;
  capacity_ = capacity;
}

void KvCache::Begin(int64_t chunk) {
  CHECK_EQ(chunk_, 0) << "KvCache::Begin without Commit";
  const int64_t needed = num_slots_ + chunk;
  if (needed > capacity_) {
    // Squeeze out padding first when that frees at least a quarter of the slots.
    const int64_t longest = *std::max_element(lengths_.begin(), lengths_.end());
    if (longest + chunk <= capacity_ && longest * 4 <= num_slots_ * 3) Compact();
  }
  if (num_slots_ + chunk > capacity_) {
    Grow(std::max<int64_t>({num_slots_ + chunk, 2 * capacity_, 64}));
  }
  chunk_ = chunk;
}

std::pair<torch::Tensor, torch::Tensor> KvCache::Store(int64_t layer,
                                                       const torch::Tensor& k,
                                                       const torch::Tensor& v) {
  CHECK_EQ(k.size(2), chunk_);
  torch::Tensor& keys = keys_[layer];
  torch::Tensor& values = values_[layer];
  keys.narrow(2, num_slots_, chunk_).copy_(k);
  values.narrow(2, num_slots_, chunk_).copy_(v);
  return {keys.narrow(2, 0, num_slots_ + chunk_),
          values.narrow(2, 0, num_slots_ + chunk_)};
}

void KvCache::Commit(const torch::Tensor& chunk_valid) {
  CHECK_EQ(chunk_valid.size(1), chunk_);
  valid_.narrow(1, num_slots_, chunk_).copy_(chunk_valid);
  torch::Tensor added = chunk_valid.sum(1).to(torch::kCPU);  // host sync
  for (int64_t b = 0; b < batch_size_; ++b) lengths_[b] += added[b].item<int64_t>();
  num_slots_ += chunk_;
  chunk_ = 0;
}

void KvCache::Clear() {
  valid_.zero_();
  num_slots_ = 0;
  std::fill(lengths_.begin(), lengths_.end(), 0);
}

void KvCache::ClearRow(int64_t row) {
  CHECK(row >= 0 && row < batch_size_);
  valid_[row].zero_();
  lengths_[row] = 0;
}

void KvCache::TruncateRow(int64_t row, int64_t keep) {
  CHECK(row >= 0 && row < batch_size_ && keep >= 0);
  if (keep >= lengths_[row] || num_slots_ == 0) return;
  torch::Tensor v = valid_[row].narrow(0, 0, num_slots_);  // a view into valid_
  torch::Tensor seen = v.to(torch::kInt64).cumsum(0);      // valid slots so far
  v.masked_fill_(seen > keep, false);
  lengths_[row] = keep;
}

void KvCache::Compact() {
  if (num_slots_ == 0) return;
  const int64_t longest = *std::max_element(lengths_.begin(), lengths_.end());
  // Stable sort of each row's slots, valid first: gathers valid slots in order.
  torch::Tensor valid = valid_.narrow(1, 0, num_slots_);
  torch::Tensor order = std::get<1>(
      (~valid).to(torch::kInt).sort(/*stable=*/true, /*dim=*/1, /*descending=*/false));
  order = order.narrow(1, 0, longest);  // [B, longest]
  torch::Tensor new_valid = valid.gather(1, order);
  for (size_t i = 0; i < keys_.size(); ++i) {
    auto index =
        order.view({batch_size_, 1, longest, 1})
            .expand({batch_size_, keys_[i].size(1), longest, keys_[i].size(3)});
    torch::Tensor k = keys_[i].narrow(2, 0, num_slots_).gather(2, index);
    torch::Tensor v = values_[i].narrow(2, 0, num_slots_).gather(2, index);
    keys_[i].narrow(2, 0, longest).copy_(k);
    values_[i].narrow(2, 0, longest).copy_(v);
  }
  valid_.zero_();
  valid_.narrow(1, 0, longest).copy_(new_valid);
  num_slots_ = longest;
}

}  // namespace nbrl::model
