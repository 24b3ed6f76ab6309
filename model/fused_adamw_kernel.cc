// FusedAdamW's element loop, in a file of its own: it is compiled with
// -fno-math-errno (so that the square root vectorizes) and without the libtorch
// precompiled header, which was built without that flag.
#include "model/fused_adamw_kernel.h"

#include <cmath>

namespace nbrl::model::internal {

// p = p * decay; m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
// p += -step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps), element by
// element in the order libtorch's kernels apply them.
void AdamWUpdateRange(float* __restrict p, const float* __restrict g,
                      float* __restrict m, float* __restrict v, int64_t begin,
                      int64_t end, const AdamWCoefficients& c) {
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i];
    const float pi = p[i] * c.decay;
    const float mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    const float vi = v[i] * c.beta2 + c.one_minus_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi +
           c.minus_step_size * (mi / (std::sqrt(vi) / c.sqrt_bias_correction2 + c.eps));
  }
}

}  // namespace nbrl::model::internal
