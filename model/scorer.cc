#include "model/scorer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace nbrl::model {
namespace {

absl::Status CheckInputs(const Transformer& model, const torch::Tensor& tokens,
                         const torch::Tensor& mask, const ScoreOptions& options) {
  if (tokens.dim() != 2 || mask.sizes() != tokens.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScoreTokens needs tokens [B, T] and a mask of the same shape, got ",
        c10::str(tokens.sizes()), " and ", c10::str(mask.sizes())));
  }
  if (!(options.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("score temperature must be > 0, got ", options.temperature));
  }
  if (tokens.size(1) == 0) return absl::OkStatus();
  // Host-side checks on small int tensors: ids in range, one run of real tokens.
  torch::Tensor m = mask.to(torch::kCPU, torch::kInt64);
  torch::Tensor starts =
      (m.narrow(1, 1, m.size(1) - 1) > m.narrow(1, 0, m.size(1) - 1)).sum(1) +
      m.narrow(1, 0, 1).squeeze(1);  // [B]
  if (starts.numel() > 0 && starts.max().item<int64_t>() > 1) {
    return absl::InvalidArgumentError(
        "ScoreTokens: a row's mask has gaps; real tokens must be one contiguous run");
  }
  torch::Tensor real = tokens.to(torch::kCPU).masked_select(m.to(torch::kBool));
  const int64_t vocab = model.config().vocab_size;
  if (real.numel() > 0 &&
      (real.min().item<int64_t>() < 0 || real.max().item<int64_t>() >= vocab)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScoreTokens: a token id is outside the vocabulary [0, ", vocab, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

PaddedBatch PadSequences(const std::vector<std::vector<int64_t>>& sequences,
                         int64_t pad_id) {
  int64_t T = 0;
  for (const auto& s : sequences) T = std::max<int64_t>(T, s.size());
  const int64_t B = static_cast<int64_t>(sequences.size());
  PaddedBatch out{torch::full({B, T}, pad_id, torch::kInt64),
                  torch::zeros({B, T}, torch::kBool)};
  auto tok = out.tokens.accessor<int64_t, 2>();
  auto mask = out.mask.accessor<bool, 2>();
  for (int64_t b = 0; b < B; ++b) {
    for (size_t t = 0; t < sequences[b].size(); ++t) {
      tok[b][t] = sequences[b][t];
      mask[b][t] = true;
    }
  }
  return out;
}

absl::StatusOr<torch::Tensor> ScoreTokens(Transformer& model,
                                          const torch::Tensor& tokens,
                                          const torch::Tensor& mask,
                                          const ScoreOptions& options) {
  if (absl::Status s = CheckInputs(model, tokens, mask, options); !s.ok()) return s;
  try {
    const int64_t B = tokens.size(0), T = tokens.size(1);
    torch::Tensor m = mask.to(model.device(), torch::kBool);           // [B, T]
    torch::Tensor ids = tokens.to(model.device()).masked_fill(~m, 0);  // [B, T]
    if (T < 2)
      return torch::zeros({B, T}, torch::TensorOptions().device(model.device()));
    torch::Tensor hidden = model.Forward(ids, m);  // [B, T, D]
    // Position t - 1 predicts token t: [B, T-1, V] logits in fp32.
    torch::Tensor logits = model.Logits(hidden.narrow(1, 0, T - 1)).to(torch::kFloat32);
    if (options.temperature != 1.0) logits = logits / options.temperature;
    torch::Tensor targets = ids.narrow(1, 1, T - 1).unsqueeze(-1);  // [B, T-1, 1]
    torch::Tensor logp =
        logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(-1);  // [B, T-1]
    torch::Tensor scored = m.narrow(1, 1, T - 1) & m.narrow(1, 0, T - 1);
    logp = logp.masked_fill(~scored, 0.0);
    return torch::cat({torch::zeros({B, 1}, logp.options()), logp}, 1);  // [B, T]
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("ScoreTokens failed: ", e.what_without_backtrace()));
  }
}

}  // namespace nbrl::model
