#include "model/scorer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace nbrl::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per chunk of the fused head, at least 32 so that each GEMM stays efficient.
// On CPU about 8 MiB of fp32 logits, below glibc's largest mmap threshold (32 MiB)
// so that chunks are reused from the heap. On CUDA the caching allocator reuses
// blocks anyway, and every chunk reads the whole head again, so chunks are as
// large as 1 GiB of logits allows.
int64_t HeadChunkRows(int64_t vocab, const torch::Device& device) {
  const int64_t chunk_bytes = device.is_cuda() ? int64_t{1} << 30 : int64_t{8} << 20;
  constexpr int64_t kMinRows = 32;
  return std::max<int64_t>(kMinRows, chunk_bytes / (4 * std::max<int64_t>(vocab, 1)));
}

// y_i = log_softmax(h_i W^T / t)[target_i]; dy_i/dz_ij = ([j == target_i] - p_ij) / t
// for the logits z = h W^T, and the head's two GEMMs carry that back to h and W.
class TargetLogProbsFunction
    : public torch::autograd::Function<TargetLogProbsFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& weight,
                               const torch::Tensor& targets, double temperature) {
    const int64_t N = hidden.size(0),
                  rows = HeadChunkRows(weight.size(0), weight.device());
    torch::Tensor out =
        torch::empty({N}, hidden.options().dtype(torch::kFloat32));  // [N]
    torch::Tensor index = targets.unsqueeze(1);                      // [N, 1]
    std::vector<torch::Tensor> saved = {hidden, weight, index};
    for (int64_t r = 0; r < N; r += rows) {
      const int64_t n = std::min(rows, N - r);
      torch::Tensor z = torch::mm(hidden.narrow(0, r, n), weight.t());  // [n, V]
      if (z.scalar_type() != torch::kFloat32) z = z.to(torch::kFloat32);
      if (temperature != 1.0) z.div_(temperature);
      at::_log_softmax_out(z, z, 1, false);  // in place, row by row
      out.narrow(0, r, n).copy_(z.gather(1, index.narrow(0, r, n)).squeeze(1));
      saved.push_back(z);
    }
    ctx->save_for_backward(saved);
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["rows"] = rows;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &hidden = saved[0], &weight = saved[1], &index = saved[2];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t N = hidden.size(0), rows = ctx->saved_data["rows"].toInt();
    if (!grads[0].defined())
      return {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const bool need_hidden = ctx->needs_input_grad(0),
               need_weight = ctx->needs_input_grad(1);
    torch::Tensor g =
        (grads[0].to(torch::kFloat32) / temperature).unsqueeze(1);  // [N, 1]
    // The head's gradient sums over every chunk: in fp32, rounded to the weight's
    // dtype once (bf16 would otherwise be rounded once per chunk).
    torch::Tensor grad_hidden, grad_weight;
    if (need_hidden) grad_hidden = torch::empty_like(hidden);
    for (int64_t r = 0, chunk = 3; r < N; r += rows, ++chunk) {
      const int64_t n = std::min(rows, N - r);
      torch::Tensor gz = saved[chunk];  // the chunk's log-softmax, consumed
      torch::Tensor gn = g.narrow(0, r, n);
      gz.exp_().mul_(-gn).scatter_add_(1, index.narrow(0, r, n), gn);  // dy/dz, fp32
      if (need_weight) {
        torch::Tensor h = hidden.narrow(0, r, n).to(torch::kFloat32);
        if (!grad_weight.defined()) {
          grad_weight = torch::mm(gz.t(), h);  // [V, D]
        } else {
          grad_weight.addmm_(gz.t(), h);
        }
      }
      if (need_hidden) {
        torch::Tensor dst = grad_hidden.narrow(0, r, n);
        torch::mm_out(dst, gz.to(hidden.scalar_type()), weight);
      }
    }
    if (grad_weight.defined()) grad_weight = grad_weight.to(weight.scalar_type());
    return {grad_hidden, grad_weight, torch::Tensor(), torch::Tensor()};
  }
};

absl::Status CheckInputs(const Transformer& model, const torch::Tensor& tokens,
                         const torch::Tensor& mask, const ScoreOptions& options) {
  if (tokens.dim() != 2 || mask.sizes() != tokens.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScoreTokens needs tokens [B, T] and a mask of the same shape, got ",
        c10::str(tokens.sizes()), " and ", c10::str(mask.sizes())));
  }
  if (!(options.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("score temperature must be > 0, got ", options.temperature));
  }
  if (tokens.size(1) == 0) return absl::OkStatus();
  // Host-side checks on small int tensors: ids in range, one run of real tokens.
  torch::Tensor m = mask.to(torch::kCPU, torch::kInt64);
  torch::Tensor starts =
      (m.narrow(1, 1, m.size(1) - 1) > m.narrow(1, 0, m.size(1) - 1)).sum(1) +
      m.narrow(1, 0, 1).squeeze(1);  // [B]
  if (starts.numel() > 0 && starts.max().item<int64_t>() > 1) {
    return absl::InvalidArgumentError(
        "ScoreTokens: a row's mask has gaps; real tokens must be one contiguous run");
  }
  torch::Tensor real = tokens.to(torch::kCPU).masked_select(m.to(torch::kBool));
  const int64_t vocab = model.config().vocab_size;
  if (real.numel() > 0 &&
      (real.min().item<int64_t>() < 0 || real.max().item<int64_t>() >= vocab)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScoreTokens: a token id is outside the vocabulary [0, ", vocab, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

torch::Tensor TargetLogProbs(Transformer& model, const torch::Tensor& hidden,
                             const torch::Tensor& targets, double temperature) {
  const int64_t D = hidden.size(-1);
  torch::Tensor out = TargetLogProbsFunction::apply(
      hidden.reshape({-1, D}), model.head_weight(), targets.reshape({-1}), temperature);
  return out.view(targets.sizes());
}

PaddedBatch PadSequences(const std::vector<std::vector<int64_t>>& sequences,
                         int64_t pad_id) {
  int64_t T = 0;
  for (const auto& s : sequences) T = std::max<int64_t>(T, s.size());
  const int64_t B = static_cast<int64_t>(sequences.size());
  PaddedBatch out{torch::full({B, T}, pad_id, torch::kInt64),
                  torch::zeros({B, T}, torch::kBool)};
  auto tok = out.tokens.accessor<int64_t, 2>();
  auto mask = out.mask.accessor<bool, 2>();
  for (int64_t b = 0; b < B; ++b) {
    for (size_t t = 0; t < sequences[b].size(); ++t) {
      tok[b][t] = sequences[b][t];
      mask[b][t] = true;
    }
  }
  return out;
}

absl::StatusOr<torch::Tensor> ScoreTokens(Transformer& model,
                                          const torch::Tensor& tokens,
                                          const torch::Tensor& mask,
                                          const ScoreOptions& options) {
  if (absl::Status s = CheckInputs(model, tokens, mask, options); !s.ok()) return s;
  try {
    const int64_t B = tokens.size(0), T = tokens.size(1);
    torch::Tensor m = mask.to(model.device(), torch::kBool);           // [B, T]
    torch::Tensor ids = tokens.to(model.device()).masked_fill(~m, 0);  // [B, T]
    if (T < 2)
      return torch::zeros({B, T}, torch::TensorOptions().device(model.device()));
    torch::Tensor hidden = model.Forward(ids, m);  // [B, T, D]
    // Position t - 1 predicts token t: [B, T-1, V] logits in fp32.
    torch::Tensor logp =
        TargetLogProbs(model, hidden.narrow(1, 0, T - 1), ids.narrow(1, 1, T - 1),
                       options.temperature);  // [B, T-1]
    torch::Tensor scored = m.narrow(1, 1, T - 1) & m.narrow(1, 0, T - 1);
    logp = logp.masked_fill(~scored, 0.0);
    return torch::cat({torch::zeros({B, 1}, logp.options()), logp}, 1);  // [B, T]
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("ScoreTokens failed: ", e.what_without_backtrace()));
  }
}

}  // namespace nbrl::model
