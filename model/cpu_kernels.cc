// Compiled with -fno-math-errno and -fassociative-math (model/CMakeLists.txt):
// sums over a row may be reordered into vector lanes, as libtorch's own reductions
// are, and the square root needs no errno, so every inner loop here vectorizes.
// And with OpenMP, except in ThreadSanitizer builds.
#include "model/cpu_kernels.h"

#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nbrl::model::internal {
namespace {

// Below this many elements of work a loop runs on the calling thread: waking the
// team costs more than it saves.
constexpr int64_t kMinParallelElements = 1 << 15;

int ThreadsFor(int threads, int64_t elements) {
  return elements >= kMinParallelElements && threads > 1 ? threads : 1;
}

int ThreadIndex() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Offsets of row `row` of a [B, H, L, hd] tensor and of its tables.
struct RotaryRow {
  int64_t x, table;
};
RotaryRow RowOffsets(const RotaryLayout& t, int64_t row) {
  const int64_t l = row % t.length, bh = row / t.length, h = bh % t.heads,
                b = bh / t.heads;
  return {b * t.x_strides[0] + h * t.x_strides[1] + l * t.x_strides[2],
          b * t.table_strides[0] + h * t.table_strides[1] + l * t.table_strides[2]};
}

}  // namespace

// p = p * decay; m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
// p += -step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps), element by
// element (within about an ulp of libtorch's kernels, which may fuse a multiply and
// an add).
void AdamWUpdate(float* __restrict p, const float* __restrict g, float* __restrict m,
                 float* __restrict v, int64_t n, const AdamWCoefficients& c,
                 int threads) {
  [[maybe_unused]] const int team = ThreadsFor(threads, n);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
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

void RmsNormForward(const float* __restrict x, const float* __restrict w, float eps,
                    int64_t d, int64_t rows, float* __restrict y, float* __restrict r,
                    int threads) {
  [[maybe_unused]] const int team = ThreadsFor(threads, rows * d);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const float* xr = x + row * d;
    float* yr = y + row * d;
    float sum = 0;
    for (int64_t j = 0; j < d; ++j) sum += xr[j] * xr[j];
    const float inv = 1.0f / std::sqrt(sum / static_cast<float>(d) + eps);
    r[row] = inv;
    for (int64_t j = 0; j < d; ++j) yr[j] = w[j] * (xr[j] * inv);
  }
}

void RmsNormBackward(const float* __restrict x, const float* __restrict w,
                     const float* __restrict r, const float* __restrict dy, int64_t d,
                     int64_t rows, float* __restrict dx, float* __restrict dw_parts,
                     int threads) {
  [[maybe_unused]] const int team = ThreadsFor(threads, rows * d);
#pragma omp parallel num_threads(team) if (team > 1)
  {
    float* __restrict part =
        dw_parts != nullptr ? dw_parts + ThreadIndex() * d : nullptr;
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const float* xr = x + row * d;
      const float* dyr = dy + row * d;
      float* dxr = dx + row * d;
      const float inv = r[row];
      float dot = 0;  // sum of dy * w * xh
      for (int64_t j = 0; j < d; ++j) dot += dyr[j] * w[j] * (xr[j] * inv);
      const float mean = dot / static_cast<float>(d);
      for (int64_t j = 0; j < d; ++j) {
        const float xh = xr[j] * inv;
        dxr[j] = inv * (dyr[j] * w[j] - xh * mean);
      }
      if (part != nullptr) {
        for (int64_t j = 0; j < d; ++j) part[j] += dyr[j] * (xr[j] * inv);
      }
    }
  }
}

void SwigluForward(const float* __restrict g, const float* __restrict s,
                   const float* __restrict u, int64_t n, float* __restrict y,
                   int threads) {
  [[maybe_unused]] const int team = ThreadsFor(threads, n);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] * s[i] * u[i];
}

void SwigluBackward(const float* __restrict g, const float* __restrict s,
                    const float* __restrict u, const float* __restrict dy, int64_t n,
                    float* __restrict dg, float* __restrict du, int threads) {
  [[maybe_unused]] const int team = ThreadsFor(threads, n);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float gs = g[i] * s[i];
    du[i] = dy[i] * gs;
    dg[i] = dy[i] * u[i] * (s[i] + gs * (1.0f - s[i]));
  }
}

namespace {

// The rotation (kBackward false) and its transpose (true), which reads the sine of
// the partner element: forward, y_j = x_j c_j - x_{j+h} s_j for j < h and
// x_j c_j + x_{j-h} s_j above; backward, dx_k = g_k c_k + g_{k+h} s_{k+h} for k < h
// and g_k c_k - g_{k-h} s_{k-h} above; both times `scale`.
template <bool kBackward>
void RotateRows(const float* __restrict in, const float* __restrict cos,
                const float* __restrict sin, const RotaryLayout& layout, float scale,
                int64_t rows, float* __restrict out, int threads) {
  const int64_t hd = layout.head_dim, half = hd / 2;
  constexpr float kSign = kBackward ? 1.0f : -1.0f;
  const int64_t low_sin = kBackward ? half : 0, high_sin = kBackward ? -half : 0;
  [[maybe_unused]] const int team = ThreadsFor(threads, rows * hd);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const RotaryRow o = RowOffsets(layout, row);
    const float *a = in + o.x, *c = cos + o.table, *s = sin + o.table;
    float* r = out + row * hd;
    for (int64_t j = 0; j < half; ++j) {
      r[j] = scale * (a[j] * c[j] + kSign * a[j + half] * s[j + low_sin]);
    }
    for (int64_t j = half; j < hd; ++j) {
      r[j] = scale * (a[j] * c[j] - kSign * a[j - half] * s[j + high_sin]);
    }
  }
}

}  // namespace

void RotaryForward(const float* x, const float* cos, const float* sin,
                   const RotaryLayout& layout, float scale, int64_t rows, float* y,
                   int threads) {
  RotateRows<false>(x, cos, sin, layout, scale, rows, y, threads);
}

void RotaryBackward(const float* dy, const float* cos, const float* sin,
                    const RotaryLayout& layout, float scale, int64_t rows, float* dx,
                    int threads) {
  RotateRows<true>(dy, cos, sin, layout, scale, rows, dx, threads);
}

}  // namespace nbrl::model::internal
