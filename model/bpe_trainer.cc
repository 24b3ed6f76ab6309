#include "model/bpe_trainer.h"

#include <nlohmann/json.hpp>
#include <queue>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/byte_level.h"
#include "model/nfc.h"
#include "model/split_pattern.h"

namespace nbrl::model {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr char kChatMlTemplate[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
}

// Word (pre-token bytes) -> occurrences, pre-tokenized exactly as Encode does.
absl::StatusOr<absl::flat_hash_map<std::string, int64_t>> CountWords(
    absl::string_view corpus) {
  ASSIGN_OR_RETURN(std::unique_ptr<SplitPattern> split,
                   SplitPattern::Create(kQwen2SplitPattern));
  absl::flat_hash_map<std::string, int64_t> words;
  std::vector<absl::string_view> pieces;
  size_t pos = 0;
  char32_t cp = 0;
  while (pos < corpus.size()) {
    size_t start = pos;
    const bool valid = Utf8SequenceAt(corpus, pos, &cp) > 0;
    while (pos < corpus.size()) {
      size_t len = Utf8SequenceAt(corpus, pos, &cp);
      if ((len > 0) != valid) break;
      pos += valid ? len : 1;
    }
    absl::string_view part = corpus.substr(start, pos - start);
    if (!valid) {
      ++words[std::string(part)];
      continue;
    }
    ASSIGN_OR_RETURN(std::string normalized, NfcNormalize(part));
    pieces.clear();
    split->Split(normalized, &pieces);
    for (absl::string_view piece : pieces) ++words[std::string(piece)];
  }
  return words;
}

absl::Status CheckOptions(const BpeTrainerOptions& options) {
  absl::flat_hash_set<std::string> specials;
  for (const std::string& s : options.special_tokens) {
    if (s.empty() || !specials.insert(s).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("special token '", s, "' is empty or listed twice"));
    }
  }
  for (const std::string* name : {&options.eos_token, &options.pad_token}) {
    if (!name->empty() && !specials.contains(*name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("eos/pad token '", *name, "' is not one of special_tokens"));
    }
  }
  const int64_t minimum = 256 + static_cast<int64_t>(options.special_tokens.size());
  if (options.vocab_size < minimum) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size ", options.vocab_size, " is below 256 bytes + ",
                     options.special_tokens.size(), " special tokens = ", minimum));
  }
  return absl::OkStatus();
}

// The merge loop. Pair counts are updated incrementally: merging a pair only
// re-counts the words that contain it. Ties go to the smaller (left, right) ids.
class MergeLearner {
 public:
  MergeLearner(const absl::flat_hash_map<std::string, int64_t>& words) {
    for (int b = 0; b < 256; ++b) {
      tokens_.push_back(std::string(1, static_cast<char>(b)));
      token_ids_[tokens_.back()] = b;
    }
    for (const auto& [word, count] : words) {
      std::vector<int32_t> symbols;
      for (char c : word) symbols.push_back(static_cast<uint8_t>(c));
      words_.push_back(std::move(symbols));
      counts_.push_back(count);
    }
    stamp_.assign(words_.size(), 0);
    for (int32_t w = 0; w < static_cast<int32_t>(words_.size()); ++w) AddPairs(w);
    for (const auto& [key, count] : pair_counts_) heap_.push({count, key});
  }

  // Learns merges until the vocabulary has `max_tokens` tokens.
  void Learn(int32_t max_tokens, int64_t min_frequency) {
    while (static_cast<int32_t>(tokens_.size()) < max_tokens && !heap_.empty()) {
      auto [count, key] = heap_.top();
      heap_.pop();
      auto it = pair_counts_.find(key);
      if (it == pair_counts_.end() || it->second != count) continue;  // stale
      if (count < min_frequency) break;
      ApplyMerge(key);
    }
  }

  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }

 private:
  struct Entry {
    int64_t count;
    uint64_t key;
    bool operator<(const Entry& o) const {
      return count != o.count ? count < o.count : key > o.key;
    }
  };

  void AddPairs(int32_t w, int64_t sign = 1) {
    const std::vector<int32_t>& s = words_[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint64_t key = PairKey(s[i], s[i + 1]);
      int64_t& c = pair_counts_[key];
      c += sign * counts_[w];
      touched_.insert(key);
      if (sign > 0) pair_words_[key].push_back(w);
      if (c == 0) pair_counts_.erase(key);
    }
  }

  void ApplyMerge(uint64_t key) {
    const int32_t left = static_cast<int32_t>(key >> 32);
    const int32_t right = static_cast<int32_t>(key & 0xFFFFFFFFu);
    std::string merged = tokens_[left] + tokens_[right];
    auto [it, inserted] =
        token_ids_.try_emplace(merged, static_cast<int32_t>(tokens_.size()));
    if (inserted) tokens_.push_back(merged);
    const int32_t id = it->second;
    merges_.emplace_back(left, right);
    std::vector<int32_t> candidates = std::move(pair_words_[key]);
    pair_words_.erase(key);
    ++current_stamp_;
    touched_.clear();
    for (int32_t w : candidates) {
      if (stamp_[w] == current_stamp_) continue;
      stamp_[w] = current_stamp_;
      std::vector<int32_t>& s = words_[w];
      std::vector<int32_t> next;
      next.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
          next.push_back(id);
          ++i;
        } else {
          next.push_back(s[i]);
        }
      }
      if (next.size() == s.size()) continue;  // stale entry: pair no longer here
      AddPairs(w, -1);
      s = std::move(next);
      AddPairs(w, +1);
    }
    for (uint64_t k : touched_) {
      auto c = pair_counts_.find(k);
      if (c != pair_counts_.end()) heap_.push({c->second, k});
    }
  }

  std::vector<std::string> tokens_;  // id -> bytes
  absl::flat_hash_map<std::string, int32_t> token_ids_;
  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::vector<std::vector<int32_t>> words_;
  std::vector<int64_t> counts_;
  std::vector<uint32_t> stamp_;
  uint32_t current_stamp_ = 0;
  absl::flat_hash_map<uint64_t, int64_t> pair_counts_;
  absl::flat_hash_map<uint64_t, std::vector<int32_t>> pair_words_;
  absl::flat_hash_set<uint64_t> touched_;
  std::priority_queue<Entry> heap_;
};

OrderedJson ByteLevelStep() {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", false},
          {"use_regex", false}};
}

std::string TokenizerJson(const MergeLearner& learner,
                          const BpeTrainerOptions& options) {
  const auto& tokens = learner.tokens();
  OrderedJson added = OrderedJson::array();
  int32_t next_id = static_cast<int32_t>(tokens.size());
  for (const std::string& s : options.special_tokens) {
    added.push_back({{"id", next_id++},
                     {"content", s},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  OrderedJson vocab = OrderedJson::object();
  for (size_t id = 0; id < tokens.size(); ++id) {
    vocab[BytesToByteLevel(tokens[id])] = id;
  }
  OrderedJson merges = OrderedJson::array();
  for (const auto& [l, r] : learner.merges()) {
    merges.push_back({BytesToByteLevel(tokens[l]), BytesToByteLevel(tokens[r])});
  }
  OrderedJson split = OrderedJson::object();
  split["type"] = "Split";
  split["pattern"] = OrderedJson::object();
  split["pattern"]["Regex"] = std::string(kQwen2SplitPattern);
  split["behavior"] = "Isolated";
  split["invert"] = false;
  OrderedJson pre = OrderedJson::object();
  pre["type"] = "Sequence";
  pre["pretokenizers"] = OrderedJson::array();
  pre["pretokenizers"].push_back(split);
  pre["pretokenizers"].push_back(ByteLevelStep());
  OrderedJson model = OrderedJson::object();
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = nullptr;
  model["continuing_subword_prefix"] = "";
  model["end_of_word_suffix"] = "";
  model["fuse_unk"] = false;
  model["byte_fallback"] = false;
  model["ignore_merges"] = false;
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);
  OrderedJson root = OrderedJson::object();
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = std::move(added);
  root["normalizer"] = OrderedJson::object();
  root["normalizer"]["type"] = "NFC";
  root["pre_tokenizer"] = std::move(pre);
  root["post_processor"] = ByteLevelStep();
  root["decoder"] = ByteLevelStep();
  root["model"] = std::move(model);
  return root.dump(1);
}

std::string TokenizerConfigJson(int32_t first_special_id,
                                const BpeTrainerOptions& options) {
  OrderedJson decoder = OrderedJson::object();
  int32_t id = first_special_id;
  for (const std::string& s : options.special_tokens) {
    decoder[std::to_string(id++)] = {{"content", s},         {"lstrip", false},
                                     {"normalized", false},  {"rstrip", false},
                                     {"single_word", false}, {"special", true}};
  }
  auto name_or_null = [](const std::string& s) {
    return s.empty() ? OrderedJson(nullptr) : OrderedJson(s);
  };
  OrderedJson config = {{"add_bos_token", false},
                        {"add_prefix_space", false},
                        {"added_tokens_decoder", decoder},
                        {"additional_special_tokens", options.special_tokens},
                        {"bos_token", nullptr},
                        {"chat_template", kChatMlTemplate},
                        {"clean_up_tokenization_spaces", false},
                        {"eos_token", name_or_null(options.eos_token)},
                        {"errors", "replace"},
                        {"model_max_length", 32768},
                        {"pad_token", name_or_null(options.pad_token)},
                        {"split_special_tokens", false},
                        {"tokenizer_class", "Qwen2Tokenizer"},
                        {"unk_token", nullptr}};
  return config.dump(2);
}

}  // namespace

absl::StatusOr<TokenizerFiles> TrainBpeTokenizer(absl::string_view corpus,
                                                 const BpeTrainerOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  ASSIGN_OR_RETURN(auto words, CountWords(corpus));
  MergeLearner learner(words);
  learner.Learn(
      options.vocab_size - static_cast<int32_t>(options.special_tokens.size()),
      options.min_frequency);
  TokenizerFiles files;
  files.tokenizer_json = TokenizerJson(learner, options);
  files.tokenizer_config_json =
      TokenizerConfigJson(static_cast<int32_t>(learner.tokens().size()), options);
  return files;
}

absl::Status WriteTokenizerFiles(const TokenizerFiles& files, const std::string& dir) {
  RETURN_IF_ERROR(common::MakeDirectories(dir));
  RETURN_IF_ERROR(common::WriteFileAtomically(absl::StrCat(dir, "/tokenizer.json"),
                                              files.tokenizer_json));
  return common::WriteFileAtomically(absl::StrCat(dir, "/tokenizer_config.json"),
                                     files.tokenizer_config_json);
}

}  // namespace nbrl::model
