#include "learner/advantages.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"

namespace nbrl::learner {
namespace {

// Mean and population std of `values`.
std::pair<double, double> MeanStd(const std::vector<double>& values) {
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double var = 0;
  for (double v : values) var += (v - mean) * (v - mean);
  var /= static_cast<double>(values.size());
  return {mean, std::sqrt(var)};
}

}  // namespace

absl::StatusOr<std::vector<std::vector<double>>> ComputeAdvantages(
    const AdvantageOptions& o, const std::vector<TrajectoryRewards>& batch) {
  if (!(o.gamma >= 0 && o.gamma <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gamma ", o.gamma, " is not in [0, 1]"));
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].step_rewards.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("trajectory ", i, " has no steps"));
    }
    for (double r : batch[i].step_rewards) {
      if (!std::isfinite(r)) {
        return absl::InvalidArgumentError(
            absl::StrCat("trajectory ", i, " has a non-finite reward"));
      }
    }
  }
  std::vector<std::vector<double>> out(batch.size());
  if (batch.empty()) return out;

  if (o.estimator == "reinforce++") {
    std::vector<double> all;
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& r = batch[i].step_rewards;
      out[i].resize(r.size());
      double g = 0;
      for (size_t t = r.size(); t-- > 0;) {
        g = r[t] + o.gamma * g;
        out[i][t] = g;
      }
      all.insert(all.end(), out[i].begin(), out[i].end());
    }
    if (!o.whiten) return out;
    auto [mean, std] = MeanStd(all);
    // All-equal returns carry no signal: their advantages are 0, not 0/0.
    const double scale = std + o.eps > 0 ? 1.0 / (std + o.eps) : 0.0;
    for (auto& steps : out) {
      for (double& a : steps) a = (a - mean) * scale;
    }
    return out;
  }
  if (o.estimator == "grpo") {
    std::map<int, std::vector<double>> totals;
    std::vector<double> total(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      for (double r : batch[i].step_rewards) total[i] += r;
      totals[batch[i].group].push_back(total[i]);
    }
    std::map<int, std::pair<double, double>> stats;
    for (const auto& [g, v] : totals) stats[g] = MeanStd(v);
    for (size_t i = 0; i < batch.size(); ++i) {
      auto [mean, std] = stats[batch[i].group];
      double a = total[i] - mean;
      if (o.grpo_scale) a = std + o.eps > 0 ? a / (std + o.eps) : 0.0;
      out[i].assign(batch[i].step_rewards.size(), a);
    }
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat("advantage estimator '", o.estimator,
                                                 "' is not one of: reinforce++, grpo"));
}

void ScaleNegativeAdvantages(double scale,
                             std::vector<std::vector<double>>* advantages) {
  if (scale == 1.0) return;
  for (auto& steps : *advantages) {
    for (double& a : steps) {
      if (a < 0) a *= scale;
    }
  }
}

}  // namespace nbrl::learner
