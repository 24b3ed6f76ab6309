#include "model/fused_adamw.h"

#include <sstream>
#include <vector>

#include "gtest/gtest.h"

namespace nbrl::model {
namespace {

using torch::optim::AdamW;
using torch::optim::AdamWOptions;

// Two copies of the same parameters, one for each optimizer.
struct Twins {
  std::vector<torch::Tensor> ours, theirs;
};

Twins MakeTwins(const std::vector<torch::Tensor>& init) {
  Twins t;
  for (const auto& x : init) {
    t.ours.push_back(x.clone().set_requires_grad(true));
    t.theirs.push_back(x.clone().set_requires_grad(true));
  }
  return t;
}

// The same random gradient on both copies of every parameter; the parameter at
// `skip` (if any) gets none this step.
void SetGradients(Twins* t, int64_t seed, int64_t skip = -1) {
  torch::manual_seed(seed);
  for (size_t i = 0; i < t->ours.size(); ++i) {
    if (static_cast<int64_t>(i) == skip) {
      t->ours[i].mutable_grad() = torch::Tensor();
      t->theirs[i].mutable_grad() = torch::Tensor();
      continue;
    }
    torch::Tensor g = torch::randn(t->ours[i].sizes()).to(t->ours[i].scalar_type());
    t->ours[i].mutable_grad() = g.clone();
    t->theirs[i].mutable_grad() = g.clone();
  }
}

void ExpectClose(const Twins& t, double rtol, double atol, int step) {
  for (size_t i = 0; i < t.ours.size(); ++i) {
    const torch::Tensor a = t.ours[i].detach().to(torch::kFloat64);
    const torch::Tensor b = t.theirs[i].detach().to(torch::kFloat64);
    EXPECT_TRUE(torch::allclose(a, b, rtol, atol))
        << "parameter " << i << " after step " << step << ": max difference "
        << (a - b).abs().max().item<double>();
  }
}

// Steps first..last on both optimizers with the same gradients (seed base + step);
// compares the parameters after each step unless rtol < 0.
void StepBoth(Twins* t, torch::optim::Optimizer* a, torch::optim::Optimizer* b,
              int first, int last, int64_t seed_base, double rtol, double atol) {
  for (int step = first; step <= last; ++step) {
    SetGradients(t, seed_base + step);
    a->step();
    b->step();
    if (rtol >= 0) ExpectClose(*t, rtol, atol, step);
  }
}

// Gives `to` the state of `from` through a serialized archive, as a checkpoint does.
void LoadStateOf(const torch::optim::Optimizer& from, torch::optim::Optimizer* to) {
  std::stringstream bytes;
  torch::serialize::OutputArchive out;
  from.save(out);
  out.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  to->load(in);
}

AdamWOptions Options() {
  AdamWOptions o(3e-2);
  o.betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
  return o;
}

TEST(FusedAdamWTest, MatchesLibtorchAdamWStepByStep) {
  torch::manual_seed(1);
  // A large parameter (split across parallel ranges), a matrix, a vector, and a
  // scalar-sized one.
  Twins t = MakeTwins({torch::randn({300, 257}), torch::randn({16, 8}),
                       torch::randn({33}), torch::randn({1})});
  FusedAdamW ours(t.ours, Options());
  AdamW theirs(t.theirs, Options());
  for (int step = 1; step <= 20; ++step) {
    // Parameter 2 misses a gradient on step 5: its state must not advance.
    SetGradients(&t, step, step == 5 ? 2 : -1);
    // A schedule changes the learning rate between steps.
    for (auto* opt : std::vector<torch::optim::Optimizer*>{&ours, &theirs}) {
      static_cast<AdamWOptions&>(opt->param_groups()[0].options()).lr(3e-2 / step);
    }
    ours.step();
    theirs.step();
    ExpectClose(t, 1e-5, 1e-6, step);
  }
  // The state the two keep is the same too.
  for (size_t i = 0; i < t.ours.size(); ++i) {
    auto key = [](const torch::Tensor& p) {
      return c10::guts::to_string(p.unsafeGetTensorImpl());
    };
    const auto& a = static_cast<const torch::optim::AdamWParamState&>(
        *ours.state().at(key(t.ours[i])));
    const auto& b = static_cast<const torch::optim::AdamWParamState&>(
        *theirs.state().at(key(t.theirs[i])));
    EXPECT_EQ(a.step(), b.step()) << i;
    EXPECT_TRUE(torch::allclose(a.exp_avg(), b.exp_avg(), 1e-5, 1e-7)) << i;
    EXPECT_TRUE(torch::allclose(a.exp_avg_sq(), b.exp_avg_sq(), 1e-5, 1e-9)) << i;
  }
  EXPECT_EQ(static_cast<const torch::optim::AdamWParamState&>(
                *ours.state().at(c10::guts::to_string(t.ours[2].unsafeGetTensorImpl())))
                .step(),
            19);
}

TEST(FusedAdamWTest, TakesLibtorchsPathForOtherParameters) {
  torch::manual_seed(2);
  // bf16 and a non-contiguous view: libtorch's sequence of tensor operations.
  Twins t = MakeTwins({torch::randn({64, 32}).to(torch::kBFloat16)});
  torch::Tensor wide = torch::randn({8, 12});
  t.ours.push_back(wide.clone().t().set_requires_grad(true));
  t.theirs.push_back(wide.clone().t().set_requires_grad(true));
  ASSERT_FALSE(t.ours.back().is_contiguous());
  FusedAdamW ours(t.ours, Options());
  AdamW theirs(t.theirs, Options());
  StepBoth(&t, &ours, &theirs, 1, 5, 100, 0, 0);  // the same operations: bit for bit
}

TEST(FusedAdamWTest, AmsgradMatches) {
  torch::manual_seed(3);
  Twins t = MakeTwins({torch::randn({40, 40})});
  AdamWOptions o = Options();
  o.amsgrad(true);
  FusedAdamW ours(t.ours, o);
  AdamW theirs(t.theirs, o);
  StepBoth(&t, &ours, &theirs, 1, 5, 200, 0, 0);
}

// A checkpoint's optimizer state moves between the two in both directions, and
// training continues the same.
TEST(FusedAdamWTest, StateSavedByOneLoadsIntoTheOther) {
  torch::manual_seed(4);
  Twins t = MakeTwins({torch::randn({50, 20}), torch::randn({20})});
  FusedAdamW ours(t.ours, Options());
  AdamW theirs(t.theirs, Options());
  StepBoth(&t, &ours, &theirs, 1, 3, 300, -1, -1);
  // Swap: our parameters continue with libtorch's optimizer loaded from our state,
  // and libtorch's parameters with ours loaded from its state.
  AdamW theirs_loaded(t.ours, Options());
  FusedAdamW ours_loaded(t.theirs, Options());
  LoadStateOf(ours, &theirs_loaded);
  LoadStateOf(theirs, &ours_loaded);
  StepBoth(&t, &theirs_loaded, &ours_loaded, 4, 6, 300, 1e-5, 1e-6);
}

TEST(FusedAdamWTest, ClearGradientsDropsThemAndTheNextStepSkipsTheParameter) {
  torch::manual_seed(5);
  Twins t = MakeTwins({torch::randn({10, 10})});
  FusedAdamW ours(t.ours, Options());
  SetGradients(&t, 400);
  ours.step();
  ours.ClearGradients();
  EXPECT_FALSE(t.ours[0].grad().defined());
  const torch::Tensor before = t.ours[0].detach().clone();
  ours.step();  // no gradient: no decay, no moment update
  EXPECT_TRUE(torch::equal(t.ours[0].detach(), before));
  // A backward after the clear stores its gradient as the parameter's.
  (t.ours[0] * 3).sum().backward();
  ASSERT_TRUE(t.ours[0].grad().defined());
  EXPECT_TRUE(torch::allclose(t.ours[0].grad(), torch::full({10, 10}, 3.0f)));
}

// The update writes through data pointers but bumps the version counters, so a
// graph that saved the old weights is refused, as with libtorch's AdamW.
TEST(FusedAdamWTest, AGraphThatSavedTheOldWeightsIsRefusedAfterAStep) {
  torch::Tensor p = torch::randn({64, 64}).set_requires_grad(true);
  FusedAdamW opt({p}, Options());
  torch::Tensor y = (p * p).sum();  // saves p
  p.mutable_grad() = torch::ones_like(p);
  opt.step();
  EXPECT_THROW(y.backward(), c10::Error);
}

}  // namespace
}  // namespace nbrl::model
