// FusedAdamW's element loop (fused_adamw.h), declared without libtorch so that its
// file compiles with its own flags.
#ifndef NBRL_MODEL_FUSED_ADAMW_KERNEL_H_
#define NBRL_MODEL_FUSED_ADAMW_KERNEL_H_

#include <cstdint>

namespace nbrl::model::internal {

// The constants of one parameter's update, rounded to float as libtorch's float
// kernels round their double scalars.
struct AdamWCoefficients {
  float decay;  // 1 - lr * weight_decay
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float sqrt_bias_correction2;
  float eps;
  float minus_step_size;  // -lr / bias_correction1
};

// Elements [begin, end) of one parameter's update, in place on p, m and v.
void AdamWUpdateRange(float* p, const float* g, float* m, float* v, int64_t begin,
                      int64_t end, const AdamWCoefficients& c);

}  // namespace nbrl::model::internal

#endif  // NBRL_MODEL_FUSED_ADAMW_KERNEL_H_
