#include "model/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "model/byte_level.h"

namespace nbrl::model {
namespace {

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(BpeModelOptions options) {
  auto model = std::unique_ptr<BpeModel>(new BpeModel(std::move(options)));
  const auto& vocab = model->options_.vocab;
  const std::string& source = model->options_.source;
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(ByteToUnicode(static_cast<uint8_t>(b)));
    if (it == vocab.end()) {
      return absl::DataLossError(
          absl::StrCat(source, ": field 'model.vocab' has no token for byte 0x",
                       absl::Hex(b), " ('", ByteToUnicode(static_cast<uint8_t>(b)),
                       "'); a byte-level BPE vocabulary needs all 256"));
    }
    model->byte_ids_[b] = it->second;
  }
  const auto& merges = model->options_.merges;
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto l = vocab.find(left);
    auto r = vocab.find(right);
    auto m = vocab.find(left + right);
    if (l == vocab.end() || r == vocab.end() || m == vocab.end()) {
      const std::string& missing =
          l == vocab.end() ? left : (r == vocab.end() ? right : left + right);
      return absl::DataLossError(
          absl::StrCat(source, ": field 'model.merges[", rank, "]' (\"", left, " ",
                       right, "\") uses '", missing, "', which is not in model.vocab"));
    }
    // Like Hugging Face, the first occurrence of a duplicated merge keeps its rank.
    model->merges_.try_emplace(PairKey(l->second, r->second),
                               static_cast<int32_t>(rank), m->second);
  }
  return model;
}

void BpeModel::Encode(absl::string_view piece, std::vector<int32_t>* ids) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    ids->push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  const bool cacheable = piece.size() <= options_.max_cached_piece_bytes;
  if (cacheable) {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> out;
  if (options_.ignore_merges) {
    auto it = options_.vocab.find(BytesToByteLevel(piece));
    if (it != options_.vocab.end()) out.push_back(it->second);
  }
  if (out.empty()) Merge(piece, &out);
  ids->insert(ids->end(), out.begin(), out.end());
  if (cacheable) {
    absl::MutexLock lock(&mu_);
    if (cache_.size() >= options_.max_cache_entries) cache_.clear();
    cache_.emplace(std::string(piece), std::move(out));
  }
}

// Hugging Face's word-level merge: repeatedly apply the lowest-ranked adjacent pair,
// the leftmost one among equals, using a heap of candidate pairs and a linked list
// of symbols. Stale heap entries are skipped when popped.
void BpeModel::Merge(absl::string_view piece, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const int32_t n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], i - 1,
                  i + 1 < n ? i + 1 : -1, true};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || symbols[pos].next < 0) return;
    const Symbol& right = symbols[symbols[pos].next];
    auto it = merges_.find(PairKey(symbols[pos].id, right.id));
    if (it != merges_.end()) heap.push({it->second.first, pos, right.id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    Candidate top = heap.top();
    heap.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (right.id != top.right_id || it == merges_.end() ||
        it->second.first != top.rank) {
      continue;
    }
    left.id = it->second.second;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    push(left.prev);
    push(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace nbrl::model
