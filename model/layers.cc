#include "model/layers.h"

#include <ATen/Parallel.h>  // at::get_num_threads

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "model/cpu_kernels.h"

namespace nbrl::model {

namespace nn = torch::nn;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// The fused backwards compute raw buffers: their results carry no graph, so a
// second derivative (create_graph) would silently be wrong. Refused instead.
void OnceDifferentiable() {
  TORCH_CHECK(!torch::GradMode::is_enabled(),
              "the fused CPU layers (RMSNorm, SwiGLU, rotary) are differentiable once: "
              "backward with create_graph is not supported");
}

bool AllCpuFloat(std::initializer_list<const torch::Tensor*> ts) {
  for (const torch::Tensor* t : ts) {
    if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != torch::kFloat32 ||
        t->is_sparse()) {
      return false;
    }
  }
  return true;
}

// RMSNorm of fp32 CPU rows in one pass forward and one backward (cpu_kernels.h),
// where the tensor formula runs six kernels forward and about ten backward.
class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, double eps) {
    const torch::Tensor xc = x.contiguous(), w = weight.contiguous();
    const int64_t d = xc.size(-1), rows = d > 0 ? xc.numel() / d : 0;
    torch::Tensor y = torch::empty_like(xc), r = torch::empty({rows}, xc.options());
    const float* xp = xc.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    float *yp = y.data_ptr<float>(), *rp = r.data_ptr<float>();
    internal::RmsNormForward(xp, wp, static_cast<float>(eps), d, rows, yp, rp,
                             at::get_num_threads());
    ctx->save_for_backward({xc, w, r});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    OnceDifferentiable();
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &r = saved[2];
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t d = x.size(-1), rows = r.numel();
    const bool need_w = ctx->needs_input_grad(1);
    torch::Tensor dx = torch::empty_like(x);
    // One partial sum of the weight's gradient per thread, added at the end.
    const int threads = at::get_num_threads();
    torch::Tensor dw_parts =
        need_w ? torch::zeros({threads, d}, x.options()) : torch::Tensor();
    const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>(),
                *rp = r.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    float* partp = need_w ? dw_parts.data_ptr<float>() : nullptr;
    internal::RmsNormBackward(xp, wp, rp, dyp, d, rows, dxp, partp, threads);
    return {dx, need_w ? dw_parts.sum(0) : torch::Tensor(), torch::Tensor()};
  }
};

// silu(g) * u on fp32 CPU tensors: sigmoid(g) is computed once (libtorch's
// vectorized kernel) and kept; the product and the whole backward are one pass
// each (cpu_kernels.h), where the tensor formula runs two kernels forward and three
// backward, one of them computing the sigmoid again.
class SwigluFunction : public torch::autograd::Function<SwigluFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate,
                               const torch::Tensor& up) {
    const torch::Tensor g = gate.contiguous(), u = up.contiguous();
    const torch::Tensor s = torch::sigmoid(g);
    torch::Tensor y = torch::empty_like(g);
    const float *gp = g.data_ptr<float>(), *sp = s.data_ptr<float>(),
                *up_ = u.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    internal::SwigluForward(gp, sp, up_, g.numel(), yp, at::get_num_threads());
    ctx->save_for_backward({g, s, u});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    OnceDifferentiable();
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &g = saved[0], &s = saved[1], &u = saved[2];
    const torch::Tensor dy = grads[0].contiguous();
    torch::Tensor dg = torch::empty_like(g), du = torch::empty_like(u);
    const float *gp = g.data_ptr<float>(), *sp = s.data_ptr<float>(),
                *up_ = u.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float *dgp = dg.data_ptr<float>(), *dup = du.data_ptr<float>();
    internal::SwigluBackward(gp, sp, up_, dyp, g.numel(), dgp, dup,
                             at::get_num_threads());
    return {dg, du};
  }
};

// Rotary embedding and a scale, fp32 on CPU, one pass forward and one backward
// (cpu_kernels.h), reading x through its strides (the transposed projection): the
// tensor formula runs five kernels forward (one a concatenation), six backward,
// and one more each way for the scale.
class RotaryFunction : public torch::autograd::Function<RotaryFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin,
                               double scale) {
    torch::Tensor y = torch::empty(x.sizes(), x.options());  // contiguous
    const internal::RotaryLayout layout = Layout(x, cos);
    const float *xp = x.data_ptr<float>(), *cp = cos.data_ptr<float>(),
                *sp = sin.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    internal::RotaryForward(xp, cp, sp, layout, static_cast<float>(scale),
                            y.numel() / layout.head_dim, yp, at::get_num_threads());
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["scale"] = scale;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    OnceDifferentiable();
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &cos = saved[0], &sin = saved[1];
    const double scale = ctx->saved_data["scale"].toDouble();
    const torch::Tensor dy = grads[0].contiguous();
    torch::Tensor dx = torch::empty_like(dy);
    const internal::RotaryLayout layout = Layout(dy, cos);
    const float *gp = dy.data_ptr<float>(), *cp = cos.data_ptr<float>(),
                *sp = sin.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    internal::RotaryBackward(gp, cp, sp, layout, static_cast<float>(scale),
                             dy.numel() / layout.head_dim, dxp, at::get_num_threads());
    return {dx, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }

  // Whether the fused path applies: x [B, H, L, hd] and tables [B, 1, L, hd] in
  // fp32 on CPU, x's last dimension and the tables contiguous, no table gradient.
  static bool Applies(const torch::Tensor& x, const torch::Tensor& cos,
                      const torch::Tensor& sin) {
    return AllCpuFloat({&x, &cos, &sin}) && x.dim() == 4 && cos.dim() == 4 &&
           cos.sizes() == sin.sizes() && cos.size(0) == x.size(0) && cos.size(1) == 1 &&
           cos.size(2) == x.size(2) && cos.size(3) == x.size(3) && x.size(3) % 2 == 0 &&
           x.size(3) > 0 && x.stride(3) == 1 && cos.is_contiguous() &&
           sin.is_contiguous() && !cos.requires_grad() && !sin.requires_grad();
  }

 private:
  static internal::RotaryLayout Layout(const torch::Tensor& x, const torch::Tensor& t) {
    return {x.size(1),
            x.size(2),
            x.size(3),
            {x.stride(0), x.stride(1), x.stride(2)},
            {t.stride(0), 0, t.stride(2)}};
  }
};

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  if (AllCpuFloat({&x, &weight_}) && x.dim() > 0 && x.size(-1) == weight_.numel()) {
    return RmsNormFunction::apply(x, weight_, eps_);
  }
  torch::Tensor h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return weight_ * h.to(x.scalar_type());
}

torch::Tensor Swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  if (AllCpuFloat({&gate, &up}) && gate.sizes() == up.sizes()) {
    return SwigluFunction::apply(gate, up);
  }
  return torch::silu(gate) * up;
}

torch::Tensor HiddenSlots(const torch::Tensor& mask) {
  const int64_t B = mask.size(0), L = mask.size(-2), S = mask.size(-1);
  return mask.view({B, 1, 1, L, S}).logical_not();
}

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double theta, torch::Device device) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  torch::Tensor exponent = torch::arange(0, head_dim, 2, f32) / head_dim;  // [hd/2]
  inv_freq_ = 1.0 / torch::pow(theta, exponent);                           // [hd/2]
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::Tables(
    const torch::Tensor& positions, torch::Dtype dtype) const {
  torch::Tensor freqs =
      positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_;      // [B, L, hd/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);  // [B, 1, L, hd]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin, double scale) {
  if (RotaryFunction::Applies(x, cos, sin) && x.numel() > 0) {
    return RotaryFunction::apply(x, cos, sin, scale);
  }
  const int64_t half = x.size(-1) / 2;
  torch::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  torch::Tensor rotated = torch::cat({-x2, x1}, -1);  // rotate_half(x)
  torch::Tensor y = x * cos + rotated * sin;
  return scale == 1.0 ? y : y * scale;
}

torch::Tensor Project(const torch::Tensor& x, const torch::Tensor& weight,
                      const torch::Tensor& bias) {
  // Up to this many rows, one GEMV per row beats OpenBLAS's GEMM (measured on
  // x86-64 with OpenBLAS 0.3.21: 3-4x at 1 to 4 rows, a wash at 8).
  constexpr int64_t kMaxGemvRows = 4;
  const int64_t in = weight.size(1), rows = in > 0 ? x.numel() / in : 0;
  if (rows == 0 || rows > kMaxGemvRows) {
    return torch::nn::functional::linear(x, weight, bias);
  }
  torch::Tensor x2 = x.reshape({rows, in});  // [rows, in]
  std::vector<torch::Tensor> ys;
  for (int64_t r = 0; r < rows; ++r) ys.push_back(torch::mv(weight, x2[r]));
  torch::Tensor y = rows == 1 ? ys[0].unsqueeze(0) : torch::stack(ys);  // [rows, out]
  if (bias.defined()) y = y + bias;
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return y.view(sizes);  // [..., out]
}

torch::Tensor Project(const torch::nn::Linear& linear, const torch::Tensor& x) {
  return Project(x, linear->weight, linear->bias);
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : n_head_(c.num_attention_heads),
      n_kv_head_(c.num_key_value_heads),
      head_dim_(c.head_dim) {
  const int64_t d = c.hidden_size, q = n_head_ * head_dim_, kv = n_kv_head_ * head_dim_;
  q_proj_ = register_module("q_proj",
                            nn::Linear(nn::LinearOptions(d, q).bias(c.attention_bias)));
  k_proj_ = register_module(
      "k_proj", nn::Linear(nn::LinearOptions(d, kv).bias(c.attention_bias)));
  v_proj_ = register_module(
      "v_proj", nn::Linear(nn::LinearOptions(d, kv).bias(c.attention_bias)));
  o_proj_ = register_module("o_proj", nn::Linear(nn::LinearOptions(q, d).bias(false)));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x,
                                     const AttentionContext& ctx, int64_t layer) {
  const int64_t B = x.size(0), L = x.size(1), G = n_head_ / n_kv_head_;
  // [B, L, D] -> [B, L, heads, hd] -> [B, heads, L, hd]
  torch::Tensor q =
      Project(q_proj_, x).view({B, L, n_head_, head_dim_}).transpose(1, 2);
  torch::Tensor k =
      Project(k_proj_, x).view({B, L, n_kv_head_, head_dim_}).transpose(1, 2);
  torch::Tensor v =
      Project(v_proj_, x).view({B, L, n_kv_head_, head_dim_}).transpose(1, 2);
  // The attention scale goes on q (L x hd) rather than the scores (L x S).
  q = ApplyRotary(q, ctx.cos, ctx.sin, 1.0 / std::sqrt(double(head_dim_)));
  k = ApplyRotary(k, ctx.cos, ctx.sin);
  if (ctx.cache != nullptr)
    std::tie(k, v) = ctx.cache->Store(layer, k, v);  // [B, KV, S, hd]
  // Query heads h = kv * G + g share KV head kv: [B, H, L, hd] -> [B, KV, G, L, hd],
  // so that K and V are used as they are (no copy per query head). The hidden slots
  // are set to -inf in place in the product (the bool mask broadcast over the G
  // query heads of a KV head), block by block: no float [B, 1, 1, L, S] tensor for
  // the whole chunk.
  q = q.contiguous().view({B, n_kv_head_, G, L, head_dim_});
  const int64_t S = k.size(2), past = S - L;
  // Long chunks go in blocks of queries, each against the keys up to its last
  // query's slot only: query l never attends past slot past + l (it is hidden
  // there), so the scores above the diagonal need not be computed at all. That
  // halves the work and the memory of the [L, S] scores of a long training row.
  // Wide batches go in blocks too, of at most kMaxScoreBlockBytes of scores.
  const int64_t row_bytes = B * n_head_ * S * static_cast<int64_t>(sizeof(float));
  const int64_t block =
      std::clamp<int64_t>(kMaxScoreBlockBytes / row_bytes, 1,
                          L >= 2 * kAttentionBlock ? kAttentionBlock : L);
  std::vector<torch::Tensor> ys;
  for (int64_t q0 = 0; q0 < L; q0 += block) {
    const int64_t lb = std::min(block, L - q0), s1 = block == L ? S : past + q0 + lb;
    torch::Tensor qb = block == L ? q : q.narrow(3, q0, lb);
    qb = qb.reshape({B, n_kv_head_, G * lb, head_dim_});
    torch::Tensor kb = s1 == S ? k : k.narrow(2, 0, s1);
    torch::Tensor vb = s1 == S ? v : v.narrow(2, 0, s1);
    torch::Tensor att = torch::matmul(qb, kb.transpose(-2, -1));  // [B, KV, G*lb, s1]
    torch::Tensor hidden = ctx.hidden;                            // [B, 1, 1, L, S]
    if (block != L) hidden = hidden.narrow(3, q0, lb).narrow(4, 0, s1);
    constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
    if (att.requires_grad()) {
      // Training: add the block's 0/-inf bias, whose backward passes the gradient
      // through as it is (masked_fill_'s would mask it: one more pass over the
      // scores' gradient for every block). Out of place: an in-place add on the
      // view would make autograd clone and copy back the whole scores' gradient
      // in the backward (CopySlices).
      att =
          (att.view({B, n_kv_head_, G, lb, s1}) +
           torch::zeros(hidden.sizes(), att.options()).masked_fill_(hidden, kMinusInf))
              .view(att.sizes());
    } else {
      att.view({B, n_kv_head_, G, lb, s1}).masked_fill_(hidden, kMinusInf);
    }
    att = torch::softmax(att, -1, torch::kFloat32).to(q.scalar_type());
    ys.push_back(torch::matmul(att, vb).view({B, n_kv_head_, G, lb, head_dim_}));
  }
  torch::Tensor y = ys.size() == 1 ? ys[0] : torch::cat(ys, 3);  // [B, KV, G, L, hd]
  y = y.view({B, n_head_, L, head_dim_})
          .transpose(1, 2)
          .reshape({B, L, n_head_ * head_dim_});
  return Project(o_proj_, y);  // [B, L, D]
}

MlpImpl::MlpImpl(const ModelConfig& c) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  gate_proj_ =
      register_module("gate_proj", nn::Linear(nn::LinearOptions(d, f).bias(false)));
  up_proj_ =
      register_module("up_proj", nn::Linear(nn::LinearOptions(d, f).bias(false)));
  down_proj_ =
      register_module("down_proj", nn::Linear(nn::LinearOptions(f, d).bias(false)));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return Project(down_proj_, Swiglu(Project(gate_proj_, x),
                                    Project(up_proj_, x)));  // [B, L, F] -> [B, L, D]
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, int64_t index)
    : index_(index) {
  input_layernorm_ =
      register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn_ = register_module("self_attn", Attention(c));
  post_attention_layernorm_ = register_module("post_attention_layernorm",
                                              RMSNorm(c.hidden_size, c.rms_norm_eps));
  mlp_ = register_module("mlp", Mlp(c));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x,
                                        const AttentionContext& ctx) {
  torch::Tensor h = x + self_attn_(input_layernorm_(x), ctx, index_);
  return h + mlp_(post_attention_layernorm_(h));
}

}  // namespace nbrl::model
