// AdamW (decoupled weight decay, Loshchilov & Hutter) with the update of a CPU fp32
// parameter done in one pass over its memory.
//
//   FusedAdamW opt(model.parameters(), torch::optim::AdamWOptions(1e-4));
//   loss.backward();
//   opt.step();
//
// The same optimizer as torch::optim::AdamW, which it extends: the same options,
// parameter groups, state (AdamWParamState under the same keys) and therefore the
// same save / load format, and the same arithmetic (within about an ulp: libtorch's
// kernels may fuse a multiply and an add). libtorch's step runs about ten
// element-wise kernels per parameter (decay, the two moment updates, the square
// root, the bias correction, the epsilon, the division and the update), each a pass
// over the parameter's memory, and allocates the denominator; for a model of a few
// million parameters these passes do not fit in cache and cost several times the
// single read-modify-write of p, m and v that this class does. Parameters that are
// not contiguous CPU float32 tensors with contiguous float32 gradients and moments
// (bf16 or CUDA parameters, amsgrad) take libtorch's sequence of tensor operations.
//
// fused_adamw_test.cc checks it against torch::optim::AdamW step by step.
#ifndef NBRL_MODEL_FUSED_ADAMW_H_
#define NBRL_MODEL_FUSED_ADAMW_H_

#include <torch/torch.h>

#include <string>
#include <type_traits>

namespace nbrl::model {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  torch::Tensor step(LossClosure closure = nullptr) override;

  // Drops every parameter's gradient (PyTorch 2's zero_grad(set_to_none=True)),
  // where libtorch 1.x's zero_grad() fills each one with zeros: the next backward
  // then stores its gradients instead of adding them into zeroed buffers, which
  // saves two passes over the parameters' size per step. A parameter the next
  // backward does not reach has no gradient, and step() leaves it alone.
  void ClearGradients();

 private:
  using StateKey = std::decay_t<decltype(state_)>::key_type;
};

// The key of p's state in an optimizer's state map, as torch::optim::AdamW writes
// it: a string in libtorch 1.x, the TensorImpl pointer in 2.x.
template <typename Key>
Key OptimizerStateKey(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    return c10::guts::to_string(p.unsafeGetTensorImpl());
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace nbrl::model

#endif  // NBRL_MODEL_FUSED_ADAMW_H_
