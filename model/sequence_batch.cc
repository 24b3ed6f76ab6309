#include "model/sequence_batch.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#ifdef NBRL_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace nbrl::model {
namespace {

at::Generator MakeGenerator(torch::Device device, uint64_t seed) {
#ifdef NBRL_WITH_CUDA
  if (device.is_cuda()) {
    at::Generator gen = at::cuda::detail::createCUDAGenerator(device.index());
    gen.set_current_seed(seed);
    return gen;
  }
#endif
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

bool EndsWith(const std::vector<int64_t>& ids, const std::vector<int64_t>& suffix) {
  return ids.size() >= suffix.size() &&
         std::equal(suffix.rbegin(), suffix.rend(), ids.rbegin());
}

// Why a row stops after `generated`, if it does.
std::optional<FinishReason> StopReason(const SamplingOptions& o, int64_t row,
                                       const std::vector<int64_t>& generated) {
  const int64_t last = generated.back();
  if (std::find(o.eos_ids.begin(), o.eos_ids.end(), last) != o.eos_ids.end()) {
    return FinishReason::kEos;
  }
  for (const auto& stop : o.stop_sequences) {
    if (EndsWith(generated, stop)) return FinishReason::kStopSequence;
  }
  if (o.stop_predicate && o.stop_predicate(row, generated)) {
    return FinishReason::kStopPredicate;
  }
  if (static_cast<int64_t>(generated.size()) >= o.max_new_tokens) {
    return FinishReason::kLength;
  }
  return std::nullopt;
}

absl::Status TorchError(const std::string& what, const c10::Error& e) {
  return absl::InternalError(
      absl::StrCat(what, " failed: ", e.what_without_backtrace()));
}

}  // namespace

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStopSequence:
      return "stop_sequence";
    case FinishReason::kStopPredicate:
      return "stop_predicate";
    case FinishReason::kContextLimit:
      return "context_limit";
  }
  return "unknown";
}

SequenceBatch::SequenceBatch(Transformer* model, int64_t batch_size)
    : model_(model), cache_(model->NewCache(batch_size)), tokens_(batch_size) {
  next_logits_ = torch::zeros({batch_size, model->config().vocab_size},
                              torch::TensorOptions().device(model->device()));
}

absl::StatusOr<std::unique_ptr<SequenceBatch>> SequenceBatch::Create(
    Transformer* model, int64_t batch_size) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence batch size must be >= 1, got ", batch_size));
  }
  try {
    return std::unique_ptr<SequenceBatch>(new SequenceBatch(model, batch_size));
  } catch (const c10::Error& e) {
    return TorchError("allocating the sequence batch", e);
  }
}

absl::Status SequenceBatch::CheckIds(const std::vector<int64_t>& ids) const {
  const int64_t vocab = model_->config().vocab_size;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status SequenceBatch::Append(const std::vector<std::vector<int64_t>>& tokens) {
  if (static_cast<int64_t>(tokens.size()) != batch_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Append got ", tokens.size(), " rows of tokens, the batch has ", batch_size()));
  }
  const int64_t limit = model_->config().max_position_embeddings;
  for (int64_t b = 0; b < batch_size(); ++b) {
    RETURN_IF_ERROR(CheckIds(tokens[b]));
    const int64_t length = static_cast<int64_t>(tokens_[b].size() + tokens[b].size());
    if (length > limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("row ", b, " would hold ", length,
                       " tokens, more than max_position_embeddings (", limit,
                       "); trim the context and Reset the row"));
    }
  }
  for (int64_t b = 0; b < batch_size(); ++b) {
    tokens_[b].insert(tokens_[b].end(), tokens[b].begin(), tokens[b].end());
  }
  return Flush();
}

absl::Status SequenceBatch::Reset(int64_t row, const std::vector<int64_t>& tokens) {
  if (row < 0 || row >= batch_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("row ", row, " is outside the batch of ", batch_size()));
  }
  RETURN_IF_ERROR(CheckIds(tokens));
  cache_.ClearRow(row);
  tokens_[row] = tokens;
  return absl::OkStatus();
}

absl::Status SequenceBatch::Truncate(int64_t row, int64_t length) {
  if (row < 0 || row >= batch_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("row ", row, " is outside the batch of ", batch_size()));
  }
  if (length < 0 || length > static_cast<int64_t>(tokens_[row].size())) {
    return absl::InvalidArgumentError(absl::StrCat("cannot truncate row ", row, " of ",
                                                   tokens_[row].size(), " tokens to ",
                                                   length));
  }
  tokens_[row].resize(static_cast<size_t>(length));
  // Keep at most length - 1 tokens cached: the last kept token is fed again, so the
  // row's next-token logits are computed from it, not left from the cut tokens.
  cache_.TruncateRow(row, std::max<int64_t>(0, length - 1));
  return absl::OkStatus();
}

void SequenceBatch::FlushChunk() {
  const int64_t B = batch_size();
  std::vector<int64_t> counts(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pending =
        static_cast<int64_t>(tokens_[b].size()) - cache_.lengths()[b];
    counts[b] = std::min(pending, kMaxChunk);
  }
  const int64_t L = *std::max_element(counts.begin(), counts.end());
  torch::Tensor ids = torch::zeros({B, L}, torch::kInt64);   // [B, L], right-padded
  torch::Tensor valid = torch::zeros({B, L}, torch::kBool);  // [B, L]
  torch::Tensor last = torch::zeros({B}, torch::kInt64);     // last new token per row
  auto ids_a = ids.accessor<int64_t, 2>();
  auto valid_a = valid.accessor<bool, 2>();
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t start = cache_.lengths()[b];
    for (int64_t i = 0; i < counts[b]; ++i) {
      ids_a[b][i] = tokens_[b][start + i];
      valid_a[b][i] = true;
    }
    if (counts[b] > 0) {
      last[b] = counts[b] - 1;
      rows.push_back(b);
    }
  }
  torch::NoGradGuard no_grad;
  torch::Tensor hidden = model_->Forward(ids, valid, &cache_);  // [B, L, D]
  const int64_t D = hidden.size(2);
  torch::Tensor index = last.to(hidden.device()).view({B, 1, 1}).expand({B, 1, D});
  torch::Tensor h = hidden.gather(1, index).squeeze(1);  // [B, D]
  torch::Tensor r = torch::tensor(rows, torch::kInt64).to(hidden.device());
  torch::Tensor logits =
      model_->Logits(h.index_select(0, r)).to(torch::kFloat32);  // [R, V]
  next_logits_.index_copy_(0, r, logits);
}

absl::Status SequenceBatch::Flush() {
  try {
    for (;;) {
      bool pending = false;
      for (int64_t b = 0; b < batch_size(); ++b) {
        pending |= static_cast<int64_t>(tokens_[b].size()) > cache_.lengths()[b];
      }
      if (!pending) return absl::OkStatus();
      FlushChunk();
    }
  } catch (const c10::Error& e) {
    return TorchError("forward", e);
  }
}

absl::StatusOr<std::vector<Generation>> SequenceBatch::Generate(
    const SamplingOptions& options, const std::vector<bool>& active) {
  RETURN_IF_ERROR(ValidateSamplingOptions(options));
  if (!active.empty() && static_cast<int64_t>(active.size()) != batch_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Generate got ", active.size(), " active flags, the batch has ", batch_size()));
  }
  std::vector<int64_t> running;
  for (int64_t b = 0; b < batch_size(); ++b) {
    if (!active.empty() && !active[b]) continue;
    if (tokens_[b].empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("row ", b, " has no tokens to continue; Append a prompt first"));
    }
    running.push_back(b);
  }
  std::vector<Generation> out(batch_size());
  RETURN_IF_ERROR(Flush());
  if (options.max_new_tokens == 0) return out;
  try {
    at::Generator gen = MakeGenerator(model_->device(), options.seed);
    const int64_t context_limit = model_->config().max_position_embeddings;
    while (!running.empty()) {
      torch::Tensor rows = torch::tensor(running, torch::kInt64).to(model_->device());
      SampledTokens s = SampleTokens(next_logits_.index_select(0, rows), options, gen);
      // Host sync: the ids decide which rows stop.
      torch::Tensor ids = s.tokens.to(torch::kCPU);
      torch::Tensor lp = s.logprobs.to(torch::kCPU);
      torch::Tensor ulp = s.untruncated_logprobs.to(torch::kCPU);
      std::vector<int64_t> still_running;
      for (size_t i = 0; i < running.size(); ++i) {
        const int64_t b = running[i];
        Generation& g = out[b];
        g.tokens.push_back(ids[i].item<int64_t>());
        g.logprobs.push_back(lp[i].item<float>());
        g.untruncated_logprobs.push_back(ulp[i].item<float>());
        tokens_[b].push_back(g.tokens.back());
        if (auto reason = StopReason(options, b, g.tokens)) {
          g.finish_reason = *reason;
        } else if (static_cast<int64_t>(tokens_[b].size()) >= context_limit) {
          g.finish_reason = FinishReason::kContextLimit;
        } else {
          still_running.push_back(b);
        }
      }
      running = std::move(still_running);
      if (!running.empty()) RETURN_IF_ERROR(Flush());
    }
  } catch (const c10::Error& e) {
    return TorchError("sampling", e);
  }
  return out;
}

absl::StatusOr<std::vector<Generation>> Generate(
    Transformer* model, const std::vector<std::vector<int64_t>>& prompts,
    const SamplingOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceBatch> batch,
                   SequenceBatch::Create(model, static_cast<int64_t>(prompts.size())));
  RETURN_IF_ERROR(batch->Append(prompts));
  return batch->Generate(options);
}

}  // namespace nbrl::model
