#include "learner/policy_loss.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace nbrl::learner {
namespace {

absl::Status CheckOptions(const PolicyLossOptions& o) {
  if (!(o.clip_low >= 0 && o.clip_low < 1) || !(o.clip_high >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_low must be in [0, 1) and clip_high >= 0, got ", o.clip_low,
                     " and ", o.clip_high));
  }
  if (o.dual_clip != 0 && !(o.dual_clip > 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dual_clip must be > 1 (or 0 for off), got ", o.dual_clip));
  }
  if (o.ratio_cap != 0 && !(o.ratio_cap > 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ratio_cap must be > 1 (or 0 for off), got ", o.ratio_cap));
  }
  if (o.aggregation != "token-mean" && o.aggregation != "action-mean") {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation '", o.aggregation, "' is not one of: token-mean, action-mean"));
  }
  return absl::OkStatus();
}

absl::Status CheckTensor(const torch::Tensor& t, const char* name, int64_t n) {
  if (!t.defined())
    return absl::InvalidArgumentError(absl::StrCat(name, " is missing"));
  if (t.dim() != 1 || t.size(0) != n) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must have shape [", n,
                                                   "], got ", t.sizes().vec().size(),
                                                   "-d with ", t.numel(), " elements"));
  }
  if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " has non-finite values"));
  }
  return absl::OkStatus();
}

// Mean of per-token values `v` [N] under the aggregation.
torch::Tensor Aggregate(const torch::Tensor& v, const torch::Tensor& action_index,
                        bool action_mean, int64_t* actions) {
  auto [unique, inverse] =
      at::_unique(action_index, /*sorted=*/true, /*return_inverse=*/true);
  *actions = unique.size(0);
  if (!action_mean) return v.mean();
  auto sums = torch::zeros({*actions}, v.options()).index_add(0, inverse, v);
  auto counts =
      torch::zeros({*actions}, v.options()).index_add(0, inverse, torch::ones_like(v));
  return (sums / counts).mean();
}

}  // namespace

absl::StatusOr<PolicyLossResult> PolicyLoss(const PolicyLossOptions& o,
                                            const PolicyLossInputs& in) {
  if (absl::Status st = CheckOptions(o); !st.ok()) return st;
  if (!in.logp.defined() || in.logp.dim() != 1 || in.logp.size(0) == 0) {
    return absl::InvalidArgumentError("policy loss needs a non-empty 1-d logp");
  }
  const int64_t n = in.logp.size(0);
  for (auto [t, name] :
       {std::pair{&in.logp, "logp"}, std::pair{&in.logp_behaviour, "logp_behaviour"},
        std::pair{&in.advantages, "advantages"},
        std::pair{&in.action_index, "action_index"}}) {
    if (absl::Status st = CheckTensor(*t, name, n); !st.ok()) return st;
  }
  if (in.logp_reference.defined()) {
    if (absl::Status st = CheckTensor(in.logp_reference, "logp_reference", n);
        !st.ok()) {
      return st;
    }
  }
  if (in.entropy.defined()) {
    if (absl::Status st = CheckTensor(in.entropy, "entropy", n); !st.ok()) return st;
  }

  const torch::Tensor adv = in.advantages.to(in.logp.dtype());
  torch::Tensor ratio = torch::exp(in.logp - in.logp_behaviour.to(in.logp.dtype()));
  if (o.ratio_cap > 0) ratio = torch::clamp_max(ratio, o.ratio_cap);
  torch::Tensor pg1 = -adv * ratio;
  torch::Tensor pg2 = -adv * torch::clamp(ratio, 1 - o.clip_low, 1 + o.clip_high);
  torch::Tensor pg = torch::max(pg1, pg2);
  torch::Tensor clipped = pg2 > pg1;
  torch::Tensor dual = torch::zeros_like(clipped);
  if (o.dual_clip > 0) {
    torch::Tensor bound = -adv * o.dual_clip;  // positive where adv < 0
    dual = (adv < 0) & (pg > bound);
    pg = torch::where(adv < 0, torch::min(pg, bound), pg);
  }
  torch::Tensor per_token = pg;
  PolicyLossResult r;
  if (in.logp_reference.defined()) {
    torch::Tensor d = in.logp_reference.to(in.logp.dtype()) - in.logp;
    torch::Tensor kl = torch::exp(d) - d - 1;
    per_token = per_token + o.kl_coef * kl;
    r.kl = kl.detach().mean().item<double>();
  }
  if (in.entropy.defined()) {
    if (o.entropy_coef != 0) per_token = per_token - o.entropy_coef * in.entropy;
    r.entropy = in.entropy.detach().mean().item<double>();
  }
  const bool action_mean = o.aggregation == "action-mean";
  r.loss = Aggregate(per_token, in.action_index, action_mean, &r.actions);
  int64_t ignored;
  r.pg_loss =
      Aggregate(pg.detach(), in.action_index, action_mean, &ignored).item<double>();
  r.clip_fraction = clipped.to(torch::kFloat64).mean().item<double>();
  r.dual_clip_fraction = dual.to(torch::kFloat64).mean().item<double>();
  r.ratio_mean = ratio.detach().mean().item<double>();
  r.ratio_max = ratio.detach().max().item<double>();
  r.tokens = n;
  return r;
}

absl::StatusOr<torch::Tensor> SftLoss(const torch::Tensor& logp,
                                      const torch::Tensor& action_index,
                                      const std::string& aggregation) {
  if (!logp.defined() || logp.dim() != 1 || logp.size(0) == 0) {
    return absl::InvalidArgumentError("SFT loss needs a non-empty 1-d logp");
  }
  if (absl::Status st = CheckTensor(action_index, "action_index", logp.size(0));
      !st.ok()) {
    return st;
  }
  if (aggregation != "token-mean" && aggregation != "action-mean") {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation '", aggregation, "' is not one of: token-mean, action-mean"));
  }
  int64_t actions;
  return Aggregate(-logp, action_index, aggregation == "action-mean", &actions);
}

}  // namespace nbrl::learner
