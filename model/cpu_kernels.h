// Element loops over raw fp32 buffers for the fused CPU paths of the model and the
// optimizer: FusedAdamW's update (fused_adamw.h), RMSNorm's and SwiGLU's forward
// and backward and the rotary embedding's (layers.cc). Declared without libtorch:
// cpu_kernels.cc is compiled with flags of its own (no errno from the square root,
// reassociated sums, so that the loops vectorize; OpenMP) and without the libtorch
// precompiled header.
//
// Each function splits its rows or elements over up to `threads` OpenMP threads
// (callers pass at::get_num_threads(), libtorch's intra-op setting, whose OpenMP
// runtime this is) when there is enough work, and runs on the calling thread
// otherwise, inside another parallel region, and in ThreadSanitizer builds (built
// without OpenMP, whose runtime it cannot see into). All buffers are contiguous and
// do not alias.
#ifndef NBRL_MODEL_CPU_KERNELS_H_
#define NBRL_MODEL_CPU_KERNELS_H_

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

// One parameter's update of n elements, in place on p, m and v.
void AdamWUpdate(float* p, const float* g, float* m, float* v, int64_t n,
                 const AdamWCoefficients& c, int threads);

// RMSNorm of x [rows, d]: r = 1 / sqrt(mean(x^2) + eps), y = w * (x * r). Writes y
// and r [rows] (kept for the backward).
void RmsNormForward(const float* x, const float* w, float eps, int64_t d, int64_t rows,
                    float* y, float* r, int threads);

// The backward: with xh = x * r, dx = r * (dy * w - xh * mean(dy * w * xh)), and,
// unless dw_parts is null, the weight's gradient sum over the rows of dy * xh added
// into dw_parts [threads, d] (zeroed by the caller), one row per thread: the
// caller sums them.
void RmsNormBackward(const float* x, const float* w, const float* r, const float* dy,
                     int64_t d, int64_t rows, float* dx, float* dw_parts, int threads);

// SwiGLU's product of n elements: y = g * s * u, where s = sigmoid(g) is given.
void SwigluForward(const float* g, const float* s, const float* u, int64_t n, float* y,
                   int threads);

// The backward: du = dy * g * s, dg = dy * u * s * (1 + g * (1 - s)).
void SwigluBackward(const float* g, const float* s, const float* u, const float* dy,
                    int64_t n, float* dg, float* du, int threads);

// Rotary embedding of x [B, H, L, hd] (Hugging Face's rotate_half layout), scaled:
// y = scale * (x * cos + rotate_half(x) * sin), with cos and sin [B, 1, L, hd].
// Rows are the B * H * L vectors of hd in y's (contiguous) order; x and cos / sin
// are read through their strides for b, h and l (cos and sin share theirs, with a
// head stride of 0), the last dimension contiguous.
struct RotaryLayout {
  int64_t heads, length, head_dim;
  int64_t x_strides[3];      // b, h, l of x (or of dy, in the backward)
  int64_t table_strides[3];  // b, h, l of cos and sin
};
void RotaryForward(const float* x, const float* cos, const float* sin,
                   const RotaryLayout& layout, float scale, int64_t rows, float* y,
                   int threads);
// The backward: dx = scale * (dy * cos + the transposed rotation of dy * sin).
void RotaryBackward(const float* dy, const float* cos, const float* sin,
                    const RotaryLayout& layout, float scale, int64_t rows, float* dx,
                    int threads);

}  // namespace nbrl::model::internal

#endif  // NBRL_MODEL_CPU_KERNELS_H_
