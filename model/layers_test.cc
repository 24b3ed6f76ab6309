// The fused CPU paths of RMSNorm, SwiGLU and the rotary embedding against their
// formulas written out in float64 tensor operations, values and gradients.
#include "model/layers.h"

#include <ATen/Parallel.h>

#include <functional>
#include <vector>

#include "gtest/gtest.h"

namespace nbrl::model {
namespace {

// Values and gradients of f(inputs) and reference(inputs in float64), for a random
// upstream gradient.
void ExpectSameValueAndGradients(
    const std::vector<torch::Tensor>& inputs,
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& f,
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& reference,
    double tol) {
  std::vector<torch::Tensor> a, b;
  for (const auto& x : inputs) {
    a.push_back(x.detach().clone().set_requires_grad(true));
    b.push_back(x.detach().to(torch::kFloat64).set_requires_grad(true));
  }
  torch::Tensor ya = f(a), yb = reference(b);
  ASSERT_EQ(ya.sizes(), yb.sizes());
  ASSERT_EQ(ya.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(ya.to(torch::kFloat64), yb, tol, tol))
      << "value: max difference " << (ya.to(torch::kFloat64) - yb).abs().max();
  torch::Tensor up = torch::randn(ya.sizes(), torch::kFloat64);
  ya.backward(up.to(torch::kFloat32));
  yb.backward(up);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].grad().defined()) << "input " << i;
    torch::Tensor ga = a[i].grad().to(torch::kFloat64), gb = b[i].grad();
    EXPECT_TRUE(torch::allclose(ga, gb, tol, tol))
        << "gradient of input " << i << ": max difference " << (ga - gb).abs().max();
  }
}

class FusedLayersTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    threads_ = at::get_num_threads();
    at::set_num_threads(GetParam());  // 2: the kernels' work split over 2 threads
    torch::manual_seed(7);
  }
  void TearDown() override { at::set_num_threads(threads_); }
  int threads_ = 1;
};

TEST_P(FusedLayersTest, RmsNormMatchesItsFormula) {
  RMSNorm norm(48, 1e-6);
  {
    torch::NoGradGuard no_grad;
    norm->named_parameters()["weight"].copy_(torch::randn({48}));
  }
  torch::Tensor w = norm->named_parameters()["weight"];
  // 1,200 rows of 48 (enough work to be split over 2 threads); one row of zeros
  // (eps only).
  torch::Tensor x = torch::randn({3, 400, 48}) * 3;
  x[1][5].zero_();
  std::vector<torch::Tensor> a = {x.clone().set_requires_grad(true)};
  torch::Tensor y = norm(a[0]);
  torch::Tensor x64 = x.to(torch::kFloat64).set_requires_grad(true);
  torch::Tensor w64 = w.detach().to(torch::kFloat64).set_requires_grad(true);
  torch::Tensor ref = w64 * (x64 * torch::rsqrt(x64.pow(2).mean(-1, true) + 1e-6));
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat64), ref, 1e-5, 1e-5));
  torch::Tensor up = torch::randn(y.sizes(), torch::kFloat64);
  y.backward(up.to(torch::kFloat32));
  ref.backward(up);
  EXPECT_TRUE(torch::allclose(a[0].grad().to(torch::kFloat64), x64.grad(), 1e-4, 1e-4))
      << (a[0].grad().to(torch::kFloat64) - x64.grad()).abs().max();
  EXPECT_TRUE(torch::allclose(w.grad().to(torch::kFloat64), w64.grad(), 1e-4, 1e-4))
      << (w.grad().to(torch::kFloat64) - w64.grad()).abs().max();
}

TEST_P(FusedLayersTest, SwigluMatchesItsFormula) {
  // 70,000 elements (split over 2 threads); large |gate| saturates the sigmoid.
  torch::Tensor gate = torch::randn({7, 10000}) * 4, up = torch::randn({7, 10000});
  ExpectSameValueAndGradients(
      {gate, up}, [](const auto& v) { return Swiglu(v[0], v[1]); },
      [](const auto& v) { return v[0] * torch::sigmoid(v[0]) * v[1]; }, 1e-5);
}

TEST_P(FusedLayersTest, RotaryMatchesItsFormulaOnTransposedInput) {
  // 2 x 4 x 301 rows of 32 (split over 2 threads).
  const int64_t B = 2, L = 301, H = 4, hd = 32;
  RotaryEmbedding rope(hd, 10000.0, torch::kCPU);
  torch::Tensor positions = torch::arange(L).repeat({B, 1}) + torch::tensor({{0}, {5}});
  auto [cos, sin] = rope.Tables(positions, torch::kFloat32);  // [B, 1, L, hd]
  const double scale = 0.25;
  // The layout the attention gives it: a [B, L, H, hd] projection transposed.
  torch::Tensor base = torch::randn({B, L, H, hd});
  auto rotate_half = [hd](const torch::Tensor& x) {
    return torch::cat({-x.narrow(-1, hd / 2, hd / 2), x.narrow(-1, 0, hd / 2)}, -1);
  };
  ExpectSameValueAndGradients(
      {base},
      [&](const auto& v) {
        torch::Tensor x = v[0].transpose(1, 2);
        EXPECT_FALSE(x.is_contiguous());
        torch::Tensor y = ApplyRotary(x, cos, sin, scale);
        EXPECT_TRUE(y.is_contiguous());
        return y;
      },
      [&](const auto& v) {
        torch::Tensor x = v[0].transpose(1, 2);
        torch::Tensor c = cos.to(torch::kFloat64), s = sin.to(torch::kFloat64);
        return (x * c + rotate_half(x) * s) * scale;
      },
      1e-5);
}

TEST_P(FusedLayersTest, SecondDerivativesAreRefused) {
  torch::Tensor gate = torch::randn({4, 8}).set_requires_grad(true);
  torch::Tensor y = Swiglu(gate, torch::randn({4, 8})).sum();
  EXPECT_THROW(torch::autograd::grad({y}, {gate}, {}, true, /*create_graph=*/true),
               c10::Error);
}

INSTANTIATE_TEST_SUITE_P(Threads, FusedLayersTest, ::testing::Values(1, 2));

}  // namespace
}  // namespace nbrl::model
