#include "model/fused_adamw.h"

#include <ATen/Parallel.h>  // at::get_num_threads

#include <cmath>
#include <memory>

#include "model/cpu_kernels.h"

namespace nbrl::model {
namespace {

using torch::optim::AdamWOptions;
using torch::optim::AdamWParamState;

bool IsDenseCpuFloat(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat32 &&
         t.is_contiguous() && !t.is_sparse();
}

}  // namespace

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = {};
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const AdamWOptions&>(group.options());
    const double lr = options.lr(), weight_decay = options.weight_decay();
    const double beta1 = std::get<0>(options.betas()),
                 beta2 = std::get<1>(options.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "AdamW does not support sparse gradients");
      const StateKey key = OptimizerStateKey<StateKey>(p);
      auto found = state_.find(key);
      if (found == state_.end()) {
        auto fresh = std::make_unique<AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (options.amsgrad()) {
          fresh->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        }
        found = state_.emplace(key, std::move(fresh)).first;
      }
      auto& state = static_cast<AdamWParamState&>(*found->second);
      torch::Tensor& exp_avg = state.exp_avg();
      torch::Tensor& exp_avg_sq = state.exp_avg_sq();
      state.step(state.step() + 1);
      const double bias_correction1 = 1 - std::pow(beta1, state.step());
      const double bias_correction2 = 1 - std::pow(beta2, state.step());
      const double step_size = lr / bias_correction1;

      if (!options.amsgrad() && IsDenseCpuFloat(p) && IsDenseCpuFloat(grad) &&
          IsDenseCpuFloat(exp_avg) && IsDenseCpuFloat(exp_avg_sq) &&
          grad.numel() == p.numel() && exp_avg.numel() == p.numel() &&
          exp_avg_sq.numel() == p.numel()) {
        const internal::AdamWCoefficients c{
            weight_decay != 0 ? static_cast<float>(1 - lr * weight_decay) : 1.0f,
            static_cast<float>(beta1),
            static_cast<float>(1 - beta1),
            static_cast<float>(beta2),
            static_cast<float>(1 - beta2),
            static_cast<float>(std::sqrt(bias_correction2)),
            static_cast<float>(options.eps()),
            static_cast<float>(-step_size)};
        float* pp = p.data_ptr<float>();
        const float* gp = grad.data_ptr<float>();
        float* mp = exp_avg.data_ptr<float>();
        float* vp = exp_avg_sq.data_ptr<float>();
        internal::AdamWUpdate(pp, gp, mp, vp, p.numel(), c, at::get_num_threads());
        // Writes through data pointers: bump the version counters as the tensor
        // operations would, so that autograd refuses a graph that saved the old
        // values.
        for (torch::Tensor* t : {&p, &exp_avg, &exp_avg_sq}) {
          t->unsafeGetTensorImpl()->bump_version();
        }
        continue;
      }

      // libtorch's own sequence, for every other kind of parameter.
      if (weight_decay != 0) p.mul_(1 - lr * weight_decay);
      exp_avg.mul_(beta1).add_(grad, 1 - beta1);
      exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      torch::Tensor denom;
      if (options.amsgrad()) {
        torch::Tensor& max_exp_avg_sq = state.max_exp_avg_sq();
        torch::max_out(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq);
        denom =
            (max_exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
      } else {
        denom = (exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
      }
      p.addcdiv_(exp_avg, denom, -step_size);
    }
  }
  return loss;
}

void FusedAdamW::ClearGradients() {
  for (auto& group : param_groups_) {
    for (auto& p : group.params()) {
      if (p.grad().defined()) p.mutable_grad().reset();
    }
  }
}

}  // namespace nbrl::model
