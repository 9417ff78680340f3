// Tests for the ODE samplers, sampling grids and training-time distributions.
#include <cmath>
#include <utility>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/exact_mixture_velocity.h"
#include "ramflow/sampler.h"
#include "ramflow/time.h"

namespace ramflow {
namespace {

// For Gaussian data N(mu, s^2) the exact flow map is affine: x0 = mu + s x1. So the error of a
// sampler against that map is its global discretisation error.
double endpoint_error(const std::string& sampler, int64_t steps) {
  auto model = ExactMixtureVelocity(GaussianMixture::single({1.0}, 0.5));
  auto x1 = torch::linspace(-2.5, 2.5, 64, torch::kDouble)
                .reshape({64, 1});  // float64: no rounding floor
  auto x0 = sample(*model, x1, {}, SampleOptions().sampler(sampler).steps(steps)).x0;
  return (x0 - (1.0 + 0.5 * x1)).abs().max().item<double>();
}

// Least-squares slope of log(error) against log(steps): the order of convergence.
double convergence_order(const std::string& sampler) {
  std::vector<double> lx, ly;
  for (int64_t n : {8, 16, 32, 64}) {
    lx.push_back(std::log(static_cast<double>(n)));
    ly.push_back(std::log(endpoint_error(sampler, n)));
  }
  double mx = 0, my = 0;
  for (size_t i = 0; i < lx.size(); ++i) mx += lx[i] / lx.size(), my += ly[i] / ly.size();
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < lx.size(); ++i)
    sxy += (lx[i] - mx) * (ly[i] - my), sxx += (lx[i] - mx) * (lx[i] - mx);
  return -sxy / sxx;
}

TEST(SamplerTest, EulerIsFirstOrder) {
  const double order = convergence_order("euler");
  EXPECT_NEAR(order, 1.0, 0.15) << "measured order " << order;
}

TEST(SamplerTest, HeunIsSecondOrder) {
  const double order = convergence_order("heun");
  EXPECT_NEAR(order, 2.0, 0.2) << "measured order " << order;
  EXPECT_LT(endpoint_error("heun", 32), endpoint_error("euler", 32) / 10);
}

TEST(SamplerTest, Dpm2IsSecondOrder) {
  const double order = convergence_order("dpm2");
  EXPECT_NEAR(order, 2.0, 0.3) << "measured order " << order;
  EXPECT_LT(endpoint_error("dpm2", 32), endpoint_error("euler", 32) / 10);
}

TEST(SamplerTest, Dpm2IsExactForAPointMass) {
  // Data at one point c: D(x, t) = c everywhere, so the exponential integrator is exact in one step
  // from any t, including t = 1 and the last step to t = 0.
  const double c = 0.7;
  VelocityFn v = [c](const torch::Tensor& x, const torch::Tensor& t) {  // v = (x - c) / t
    return (x - c) / t.view({-1, 1});
  };
  auto x = torch::linspace(-2, 2, 5, torch::kDouble).reshape({5, 1});
  for (auto [t, t_next] : {std::pair{1.0, 0.6}, std::pair{0.6, 0.25}, std::pair{0.25, 0.0}}) {
    auto y = dpm2_step(v, x, t, t_next, {});
    auto exact = c + (t_next / t) * (x - c);  // the flow of a point mass: x_t = c + t eps
    EXPECT_TRUE(torch::allclose(y, exact, 1e-12, 1e-12)) << t << " -> " << t_next;
    x = y;
  }
}

TEST(SamplerTest, EulerStepIsTheConventionUpdate) {
  // x_next = x + (t_next - t) v: with v = const, one step moves by (t_next - t) v exactly.
  VelocityFn v = [](const torch::Tensor& x, const torch::Tensor&) {
    return torch::full_like(x, 2.0);
  };
  auto x = torch::zeros({3, 2}, torch::kDouble);
  auto y = euler_step(v, x, 0.75, 0.5, {});
  EXPECT_TRUE(torch::allclose(y, torch::full_like(x, -0.5)));
}

class SamplerContract : public ::testing::TestWithParam<std::string> {};

TEST_P(SamplerContract, ShapeDeterminismAndEvaluationCount) {
  const SamplerInfo& info = samplers().get(GetParam());
  auto model = ExactMixtureVelocity(GaussianMixture::ring());
  Rng rng(3);
  auto x1 = rng.randn({17, 2});
  auto opts = SampleOptions().sampler(GetParam()).steps(7).shift(3.0);
  Rng a(5), b(5);
  auto r1 = sample(*model, x1, {}, opts, &a);
  auto r2 = sample(*model, x1, {}, opts, &b);
  EXPECT_EQ(r1.x0.sizes(), x1.sizes());
  EXPECT_TRUE(torch::equal(r1.x0, r2.x0));
  EXPECT_EQ(r1.nfe, 7 * info.nfe_per_step);
  EXPECT_FALSE(r1.x0.requires_grad());
  EXPECT_TRUE(torch::isfinite(r1.x0).all().item<bool>());
}

INSTANTIATE_TEST_SUITE_P(AllSamplers, SamplerContract, ::testing::ValuesIn(samplers().names()));

TEST(TimeGridTest, ShiftedGridRunsFromOneToZero) {
  for (double shift : {1.0, 3.0, 0.5}) {
    auto g = time_grid(10, shift);
    ASSERT_EQ(g.size(), 11u);
    EXPECT_EQ(g.front(), 1.0);
    EXPECT_EQ(g.back(), 0.0);
    for (size_t i = 0; i + 1 < g.size(); ++i) EXPECT_GT(g[i], g[i + 1]);
  }
  EXPECT_DOUBLE_EQ(shift_time(0.5, 3.0), 0.75);  // 3 * 0.5 / (1 + 2 * 0.5)
  EXPECT_NEAR(time_grid(4, 1.0)[1], 0.75, 1e-15);
}

TEST(TimeDistributionTest, MomentsMatchTheLaw) {
  Rng rng(11);
  const int64_t n = 200000;
  TimeDistribution uniform;
  EXPECT_NEAR(uniform.sample(n, rng).mean().item<double>(), 0.5, 0.005);
  TimeDistribution power;
  power.kind = "power";
  power.alpha = 1.0;  // mean of p(t) = 2t is 2/3
  auto tp = power.sample(n, rng);
  EXPECT_NEAR(tp.mean().item<double>(), 2.0 / 3.0, 0.005);
  EXPECT_GT(tp.min().item<double>(), 0.0);
  EXPECT_LT(tp.max().item<double>(), 1.0);
  TimeDistribution ln;
  ln.kind = "logit_normal";
  ln.mean = 0.5;
  auto tl = ln.sample(n, rng);
  EXPECT_NEAR(tl.median().item<double>(), 1.0 / (1.0 + std::exp(-0.5)), 0.005);
  // Every density integrates to one.
  for (const auto* d : {&uniform, &power, &ln}) {
    double integral = 0;
    const int k = 20000;
    for (int i = 0; i < k; ++i) integral += d->density((i + 0.5) / k) / k;
    EXPECT_NEAR(integral, 1.0, 2e-3) << d->kind;
  }
  TimeDistribution bad;
  bad.kind = "cauchy";
  EXPECT_THROW(bad.validate(), ConfigError);
}

}  // namespace
}  // namespace ramflow
