#include "model/sampler.h"

#include "absl/strings/str_cat.h"

namespace nbrl::model {

absl::Status ValidateSamplingOptions(const SamplingOptions& o) {
  if (!(o.temperature >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling temperature must be >= 0, got ", o.temperature));
  }
  if (o.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling top_k must be >= 0 (0: off), got ", o.top_k));
  }
  if (!(o.top_p > 0 && o.top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling top_p must be in (0, 1], got ", o.top_p));
  }
  if (o.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 0, got ", o.max_new_tokens));
  }
  for (const auto& stop : o.stop_sequences) {
    if (stop.empty()) return absl::InvalidArgumentError("a stop sequence is empty");
  }
  return absl::OkStatus();
}

SampledTokens SampleTokens(const torch::Tensor& logits, const SamplingOptions& o,
                           at::Generator generator) {
  const double inf = std::numeric_limits<double>::infinity();
  torch::Tensor x = logits.to(torch::kFloat32);  // [N, V]
  SampledTokens out;
  if (o.temperature == 0) {
    out.tokens = x.argmax(-1);
    out.untruncated_logprobs =
        torch::log_softmax(x, -1).gather(-1, out.tokens.unsqueeze(-1)).squeeze(-1);
    out.logprobs = torch::zeros_like(out.untruncated_logprobs);
    return out;
  }
  x = x / o.temperature;
  torch::Tensor full = torch::log_softmax(x, -1);  // [N, V]
  torch::Tensor kept = x;
  if (o.top_k > 0 && o.top_k < x.size(-1)) {
    torch::Tensor kth = std::get<0>(x.topk(o.top_k, -1)).narrow(-1, o.top_k - 1, 1);
    kept = kept.masked_fill(kept < kth, -inf);  // [N, V]
  }
  if (o.top_p < 1) {
    auto [sorted, order] = kept.sort(-1, /*descending=*/true);  // [N, V]
    torch::Tensor probs = torch::softmax(sorted, -1);
    // Drop a token when the ones before it already reach top_p (keeps at least one).
    torch::Tensor drop = (probs.cumsum(-1) - probs) >= o.top_p;
    kept = kept.scatter(-1, order, sorted.masked_fill(drop, -inf));
  }
  const bool truncated = (o.top_k > 0 && o.top_k < x.size(-1)) || o.top_p < 1;
  torch::Tensor logp = truncated ? torch::log_softmax(kept, -1) : full;  // [N, V]
  // One draw: with and without replacement are the same distribution, and the
  // with-replacement kernel needs one uniform per row instead of one per token.
  out.tokens = torch::multinomial(logp.exp(), 1, /*replacement=*/true, generator)
                   .squeeze(-1);  // [N]
  torch::Tensor index = out.tokens.unsqueeze(-1);
  out.logprobs = logp.gather(-1, index).squeeze(-1);
  out.untruncated_logprobs = full.gather(-1, index).squeeze(-1);
  return out;
}

}  // namespace nbrl::model
