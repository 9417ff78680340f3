// The fast paths against the LibTorch operators they replace: the fused MLP (inference kernels and
// the one-node autograd stack with its hand-written backward), the flat AdamW and GELU's kernel.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/adamw.h"
#include "ramflow/gelu_tanh.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/rng.h"
#include "ramflow/velocity_field.h"

namespace ramflow {
namespace {

// Relative max-norm distance, so that the tolerance means the same for every size.
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

struct Shape {
  MLPVelocityOptions options;
  int64_t batch;
};

std::vector<Shape> shapes() {
  return {
      {MLPVelocityOptions(2), 32},                                      // the ring default
      {MLPVelocityOptions(2), 129},                                     // rows beyond every tile
      {MLPVelocityOptions(3).hidden(112).depth(2), 19},                 // 64 + 32 + 16 columns
      {MLPVelocityOptions(4).hidden(100).depth(1).frequencies(30), 9},  // 64 + 32 + 4; wide input
      {MLPVelocityOptions(3).hidden(20).depth(2).frequencies(3), 7},    // widths below one tile
      {MLPVelocityOptions(5).hidden(40).depth(1).num_classes(4).class_dim(6), 33},
      {MLPVelocityOptions(1).hidden(8).depth(2).frequencies(0), 1}};
}

std::pair<MLPVelocity, MLPVelocity> fused_and_reference(const MLPVelocityOptions& options) {
  torch::manual_seed(0);
  MLPVelocity fused(options), reference(options);
  copy_weights(*fused, *reference);
  reference->set_fused(false);
  return {fused, reference};
}

// x [B, D], t [B] and, for a conditional model, B class conditions.
struct Inputs {
  torch::Tensor x, t;
  Condition cond;
};

Inputs inputs(const Shape& s, uint64_t seed) {
  Rng rng(seed);
  Inputs in{rng.randn({s.batch, s.options.dim()}), rng.rand({s.batch}), {}};
  if (s.options.num_classes() > 0)
    in.cond = Condition::classes(torch::randint(s.options.num_classes(), {s.batch}));
  return in;
}

TEST(FusedMLP, InferenceMatchesOperators) {
  for (const auto& s : shapes()) {
    auto [fused, reference] = fused_and_reference(s.options);
    const auto [x, t, cond] = inputs(s, 1);
    c10::InferenceMode guard;
    const auto v = fused->forward(x, t, cond);
    EXPECT_LT(rel_err(v, reference->forward(x, t, cond)), 2e-6) << "batch " << s.batch;
    // A sampler step shares t across the batch (the phase features are computed once).
    auto t_shared = torch::full({s.batch}, 0.37);
    EXPECT_LT(rel_err(fused->forward(x, t_shared, cond), reference->forward(x, t_shared, cond)),
              2e-6);
  }
}

TEST(FusedMLP, BackwardMatchesAutograd) {
  for (const auto& s : shapes()) {
    auto [fused, reference] = fused_and_reference(s.options);
    const Inputs in = inputs(s, 2);  // (a lambda below uses it: no structured binding in C++17)
    auto w = Rng(3).randn({s.batch, s.options.dim()});  // loss = sum(w * v): dLoss/dv = w
    auto grads = [&](MLPVelocity& m) {
      auto xg = in.x.clone().requires_grad_(true);
      auto v = m->forward(xg, in.t, in.cond);
      std::vector<torch::Tensor> wrt = m->parameters();
      wrt.push_back(xg);
      auto loss = (w * v).sum();
      auto g = torch::autograd::grad({loss}, wrt);
      g.push_back(v.detach());
      return g;
    };
    const auto a = grads(fused), b = grads(reference);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LT(rel_err(a[i], b[i]), 2e-5) << "tensor " << i << ", batch " << s.batch;
  }
}

TEST(FusedMLP, GradientsOnlyWhereAsked) {
  // The reference model's weights are frozen: only dv/dx flows (Adjoint Matching's vector-Jacobian
  // product of the base drift), and it equals the operator path's.
  auto [fused, reference] = fused_and_reference(MLPVelocityOptions(2).hidden(16));
  for (auto& p : fused->parameters()) p.set_requires_grad(false);
  auto x = torch::randn({5, 2}, torch::requires_grad());
  auto t = torch::rand({5});
  auto gx = torch::autograd::grad({fused->forward(x, t).sum()}, {x})[0];
  auto gx_ref = torch::autograd::grad({reference->forward(x, t).sum()}, {x})[0];
  EXPECT_LT(rel_err(gx, gx_ref), 2e-5);
}

TEST(FusedMLP, RefusesHigherOrderGradients) {
  auto [fused, reference] = fused_and_reference(MLPVelocityOptions(2).hidden(16));
  auto x = torch::randn({4, 2}, torch::requires_grad());
  auto v = fused->forward(x, torch::rand({4}));
  EXPECT_THROW(
      torch::autograd::grad({v.sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true),
      c10::Error);
}

TEST(FlatAdamW, MatchesTorchAdamW) {
  torch::manual_seed(3);
  auto a1 = torch::randn({7, 3}, torch::requires_grad()),
       b1 = torch::randn({5}, torch::requires_grad());
  auto a2 = a1.detach().clone().requires_grad_(true), b2 = b1.detach().clone().requires_grad_(true);
  AdamW ours({a1, b1}, AdamWOptions().lr(0.05).weight_decay(0.1));
  torch::optim::AdamW theirs({a2, b2}, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
  for (int step = 0; step < 20; ++step) {
    auto loss = [&](const torch::Tensor& a, const torch::Tensor& b) {
      return (a.sin() * 3).pow(2).sum() + (b - 1).pow(4).sum();
    };
    ours.zero_grad();
    loss(a1, b1).backward();
    ours.step();
    theirs.zero_grad();
    loss(a2, b2).backward();
    theirs.step();
  }
  EXPECT_LT(rel_err(a1.detach(), a2.detach()), 1e-5);
  EXPECT_LT(rel_err(b1.detach(), b2.detach()), 1e-5);
  // The parameters are views of the flat buffer, and their gradients of the flat gradient.
  EXPECT_EQ(ours.flat_params().numel(), 26);
  EXPECT_TRUE(torch::equal(ours.flat_params().narrow(0, 0, 21).view({7, 3}), a1.detach()));
  EXPECT_NEAR(
      ours.grad_norm(),
      std::sqrt(a1.grad().pow(2).sum().item<double>() + b1.grad().pow(2).sum().item<double>()),
      1e-4);
}

TEST(FlatAdamW, ReattachesAReplacedGradient) {
  auto p = torch::ones({4}, torch::requires_grad());
  AdamW opt({p}, AdamWOptions().lr(0.1));
  p.mutable_grad() = torch::full({4}, 2.0);  // code outside the optimiser replaced .grad
  EXPECT_DOUBLE_EQ(opt.grad_norm(), 4.0);    // sqrt(4 * 2^2)
  opt.step();
  EXPECT_TRUE(
      torch::allclose(p.detach(), torch::full({4}, 0.9)));  // first Adam step moves lr * sign(g)
}

// Parameters of several dtypes: one flat buffer per dtype, float32 moments for all, and each
// parameter moved as torch.optim.AdamW moves its float64 twin (the bfloat16 one within its
// rounding).
TEST(FlatAdamW, ParametersOfSeveralDtypesKeepFloat32Moments) {
  torch::manual_seed(4);
  auto a = torch::randn({6}, torch::requires_grad());
  auto b = torch::randn({4}).to(torch::kBFloat16).requires_grad_(true);
  auto a_ref = a.detach().to(torch::kDouble).requires_grad_(true);
  auto b_ref = b.detach().to(torch::kDouble).requires_grad_(true);
  const auto b_start = b_ref.detach().clone();
  AdamW ours({a, b}, AdamWOptions().lr(0.05).weight_decay(0.1));
  torch::optim::AdamW theirs({a_ref, b_ref}, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
  ASSERT_EQ(ours.groups(), 2u);
  EXPECT_EQ(ours.numel(), 10);
  EXPECT_EQ(ours.flat_params(1).scalar_type(), torch::kBFloat16);
  auto loss = [](const torch::Tensor& x, const torch::Tensor& y) {
    return (x.sin() * 3).pow(2).sum() + (y.to(torch::kDouble) - 1).pow(2).sum();
  };
  for (int step = 0; step < 5; ++step) {
    ours.zero_grad();
    loss(a, b).backward();
    EXPECT_EQ(b.grad().scalar_type(), torch::kBFloat16);
    ours.step();
    theirs.zero_grad();
    loss(a_ref, b_ref).backward();
    theirs.step();
    // Ours agrees up to bfloat16's rounding of the result (half an ulp, 2^-9 relative) and of the
    // gradient the moments see; each step moves b by up to lr = 0.05, so a missing or wrong update
    // fails.
    const auto diff = (b.detach().to(torch::kDouble) - b_ref.detach()).abs();
    EXPECT_TRUE((diff <= b_ref.detach().abs() * std::pow(2.0, -8) + 1e-3).all().item<bool>())
        << step << " " << diff;
    // Start the reference's next step from our rounded bfloat16 values, so each step compares one
    // update.
    torch::NoGradGuard no_grad;
    b_ref.copy_(b.detach().to(torch::kDouble));
  }
  EXPECT_GT((b.detach().to(torch::kDouble) - b_start).abs().min().item<double>(), 0.05);  // b moved
  EXPECT_LT(rel_err(a.detach().to(torch::kDouble), a_ref.detach()), 1e-5);
  const auto state = ours.state();
  EXPECT_EQ(state[0].second.scalar_type(), torch::kFloat);
  EXPECT_EQ(state[0].second.numel(), 10);
  // The state round-trips into a fresh optimiser over the same layout.
  auto a2 = a.detach().clone().requires_grad_(true), b2 = b.detach().clone().requires_grad_(true);
  AdamW again({a2, b2}, AdamWOptions().lr(0.05).weight_decay(0.1));
  again.load_state(state[0].second, state[1].second, ours.steps());
  EXPECT_TRUE(torch::equal(again.state()[0].second, state[0].second));
  EXPECT_TRUE(torch::equal(again.state()[1].second, state[1].second));
}

// GELU (tanh) in float64: 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as
// x sigmoid(2 u) (the same function: 0.5 (1 + tanh u) = sigmoid(2 u)) so that where 1 + tanh u
// falls below float64's epsilon (x < -6) the reference keeps its digits.
torch::Tensor gelu_tanh_f64(const torch::Tensor& x) {
  const auto d = x.to(torch::kFloat64);
  return d * torch::sigmoid(std::sqrt(8.0 / M_PI) * (d + 0.044715 * d.pow(3)));
}

TEST(GeluTanh, MatchesTheFormulaInFloat64) {
  // Every lane count's tail (n = 1..70), a dense sweep of [-12, 12] and wide random values.
  Rng rng(3);
  std::vector<torch::Tensor> xs = {torch::linspace(-12, 12, 100001), 4 * rng.randn({4099})};
  for (int64_t n = 1; n <= 70; ++n) xs.push_back(3 * rng.randn({n}));
  // The tanh form in float64 where it has its digits (x >= -5): the two forms agree.
  const auto x5 = torch::linspace(-5, 12, 1001, torch::kFloat64);
  EXPECT_LT(
      rel_err(0.5 * x5 * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x5 + 0.044715 * x5.pow(3)))),
              gelu_tanh_f64(x5)),
      1e-14);
  for (const auto& x : xs) {
    const auto y = gelu_tanh(x), ref = gelu_tanh_f64(x);
    ASSERT_EQ(y.scalar_type(), torch::kFloat);
    // Relative 1e-6 (1 + |2 u|) of the value, the rounding of float32's 2 u = sqrt(8/pi) (x +
    // 0.044715 x^3) carried through exp(-2 u); below x = -9 both are within 1e-30 of zero.
    const auto d = x.to(torch::kFloat64);
    const auto two_u = std::sqrt(8.0 / M_PI) * (d + 0.044715 * d.pow(3));
    const auto err =
        (y.to(torch::kFloat64) - ref).abs() - (1e-6 * (1 + two_u.abs()) * ref.abs() + 1e-30);
    EXPECT_LE(err.max().item<double>(), 0)
        << "n = " << x.numel() << ", worst at x = " << x[err.argmax()].item<float>();
  }
  // In place when asked (and no gradient is recorded): the same values, in x's own memory.
  auto x = rng.randn({5, 7, 33});
  const auto expected = gelu_tanh(x);
  const auto same = gelu_tanh(x, /*overwrite=*/true);
  EXPECT_EQ(same.data_ptr(), x.data_ptr());
  EXPECT_TRUE(torch::equal(same, expected));
}

TEST(GeluTanh, GradientMatchesTheFormulasDerivative) {
  Rng rng(4);
  auto x = (3 * rng.randn({3, 17, 41})).requires_grad_(true);
  const auto w = rng.randn({3, 17, 41});  // a weighted sum, so that dh varies
  const auto y = gelu_tanh(x);
  EXPECT_NE(y.data_ptr(), x.data_ptr());  // never over an input that needs its gradient
  const auto g = torch::autograd::grad({(y * w).sum()}, {x})[0];
  auto x64 = x.detach().to(torch::kFloat64).requires_grad_(true);
  const auto g64 =
      torch::autograd::grad({(gelu_tanh_f64(x64) * w.to(torch::kFloat64)).sum()}, {x64})[0];
  EXPECT_LT(rel_err(g.to(torch::kFloat64), g64), 1e-6);
  // A second-order gradient goes through LibTorch's differentiable formula.
  auto xs = x.detach().clone().requires_grad_(true);
  const auto g1 = torch::autograd::grad({gelu_tanh(xs).sum()}, {xs}, {}, true, true)[0];
  const auto g2 = torch::autograd::grad({g1.sum()}, {xs})[0];
  auto x2 = x.detach().clone().requires_grad_(true);
  const auto r1 = torch::autograd::grad({torch::gelu(x2, "tanh").sum()}, {x2}, {}, true, true)[0];
  EXPECT_LT(rel_err(g2, torch::autograd::grad({r1.sum()}, {x2})[0]), 1e-5);
}

TEST(GeluTanh, OtherTensorsTakeLibTorchsOperator) {
  Rng rng(5);
  const auto x = rng.randn({6, 10});
  for (const auto& other : {x.t(), x.to(torch::kFloat64)})
    EXPECT_TRUE(torch::equal(gelu_tanh(other), torch::gelu(other, "tanh")));
}

}  // namespace
}  // namespace ramflow
