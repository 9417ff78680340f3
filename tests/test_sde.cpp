// The ODE-to-SDE step of Flow-GRPO and Adjoint Matching (sde.h):
//   * a = 0 is exactly the Euler step
//   * every noise level keeps the flow's marginals; a = sqrt 2 makes the endpoint independent of
//   the
//     starting noise (memoryless), a = 0.7 does not
//   * the log-density is the Gaussian one, mean or sum over coordinates
//   * trajectories keep the path and log-densities of the SDE steps only, and re-evaluating a
//   stored
//     step reproduces its log-density bit for bit
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/conventions.h"
#include "ramflow/exact_mixture_velocity.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/sde.h"
#include "ramflow/time.h"

namespace ramflow {
namespace {

TEST(SdeTest, ZeroNoiseIsExactlyTheEulerStep) {
  Rng rng(0);
  auto x = rng.randn({64, 3}), v = rng.randn({64, 3});
  VelocityFn field = [&](const torch::Tensor&, const torch::Tensor&) { return v; };
  for (auto [t, t_next] : {std::pair{1.0, 0.9}, std::pair{0.6, 0.55}, std::pair{0.1, 0.0}}) {
    auto sde = sde_step(x, v, 0.0, t, t_next);
    EXPECT_TRUE(torch::equal(sde.mean, euler_step(field, x, t, t_next, {})));
    EXPECT_EQ(sde.std, 0.0);
  }
  // a = sqrt 2: the drift is 2 v + x / (1 - t) (Adjoint Matching's memoryless SDE).
  const double t = 0.6, t_next = 0.5, dt = t_next - t;
  auto mean = sde_step(x, v, std::sqrt(2.0), t, t_next).mean;
  EXPECT_TRUE(torch::allclose(mean, x + dt * (2 * v + x / (1 - t)), 1e-5, 1e-6));
  // Flow-GRPO's clamp at t = 1: sigma uses 1 - t_next.
  EXPECT_DOUBLE_EQ(sde_sigma(0.7, 1.0, 0.96), 0.7 * std::sqrt(1.0 / 0.04));
  EXPECT_DOUBLE_EQ(sde_sigma(0.7, 0.5, 0.4), 0.7);
}

// 1-D data N(2, 0.5^2) with its exact velocity: the endpoint law and its correlation with the
// noise.
struct EndpointStats {
  double mean, std, corr;
};
EndpointStats endpoint_stats(double a, int64_t steps) {
  auto model = ExactMixtureVelocity(GaussianMixture::single({2.0}, 0.5));
  Rng rng(7);
  auto x1 = rng.randn({10000, 1}, torch::kDouble);
  std::vector<int64_t> all;
  for (int64_t k = 0; k < steps; ++k) all.push_back(k);
  auto traj = sample_trajectory(
      *model, x1, {}, TrajectoryOptions().grid(time_grid(steps)).noise_level(a).sde_steps(all),
      rng);
  auto x0 = traj.x[steps].flatten(), z = x1.flatten();
  const double corr = ((x0 - x0.mean()) * (z - z.mean())).mean().item<double>() /
                      (x0.std(false) * z.std(false)).item<double>();
  return {x0.mean().item<double>(), x0.std().item<double>(), corr};
}

TEST(SdeTest, KeepsTheMarginalsAndSqrtTwoIsMemoryless) {
  const auto ode = endpoint_stats(0.0, 50), grpo = endpoint_stats(0.7, 50),
             am = endpoint_stats(std::sqrt(2.0), 50);
  for (const auto& s : {ode, grpo, am}) {
    EXPECT_NEAR(s.mean, 2.0, 0.02);
    EXPECT_NEAR(s.std, 0.5, 0.02);
  }
  EXPECT_GT(ode.corr, 0.999);  // the ODE is a deterministic map
  EXPECT_GT(grpo.corr, 0.05);  // a = 0.7 keeps some memory of the noise
  EXPECT_LT(grpo.corr, 0.5);
  EXPECT_LT(std::abs(am.corr), 0.03);  // memoryless: independent of the starting noise
}

TEST(SdeTest, LogDensityIsGaussianMeanOrSumOverCoordinates) {
  Rng rng(3);
  auto mean = rng.randn({5, 4}, torch::kDouble), x = rng.randn({5, 4}, torch::kDouble);
  const double s = 0.3;
  auto expected =
      (-(x - mean).square() / (2 * s * s) - std::log(s) - 0.5 * std::log(2 * M_PI)).sum(1);
  EXPECT_TRUE(torch::allclose(gaussian_log_prob(x, mean, s, "sum"), expected, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(gaussian_log_prob(x, mean, s, "mean"), expected / 4, 1e-12, 1e-12));
  EXPECT_THROW(gaussian_log_prob(x, mean, s, "max"), ConfigError);
}

TEST(SdeTest, TrajectoryKeepsThePathAndReproducesItsLogDensities) {
  auto model = make_velocity_field(MLPVelocityOptions(2).hidden(32).to_json());
  Rng rng(11);
  auto x1 = rng.randn({24, 2});
  const auto grid = time_grid(10, 3.0);
  const double a = 0.7;
  auto traj = sample_trajectory(
      *model, x1, {}, TrajectoryOptions().grid(grid).noise_level(a).sde_steps({2, 3, 4}), rng);
  ASSERT_EQ(traj.x.sizes(), (std::vector<int64_t>{11, 24, 2}));
  EXPECT_TRUE(torch::equal(traj.x[0], x1));
  EXPECT_EQ(traj.nfe, 10);
  torch::NoGradGuard no_grad;
  for (int64_t k = 0; k < 10; ++k) {
    auto x = traj.x[k];
    auto v = model->forward(x, torch::full({24}, grid[k]));
    if (k < 2 || k > 4) {  // ODE steps: Euler, log-density 0
      EXPECT_TRUE(torch::equal(traj.x[k + 1], x.add(v, grid[k + 1] - grid[k]))) << k;
      EXPECT_EQ(traj.log_prob[k].abs().max().item<float>(), 0.0f) << k;
      continue;
    }
    const auto c = sde_coefficients(a, grid[k], grid[k + 1]);
    auto mean = sde_mean(x, v, torch::full({24}, c.x_coef), torch::full({24}, c.v_coef));
    auto lp = gaussian_log_prob(traj.x[k + 1], mean, torch::full({24}, c.std), "mean");
    EXPECT_TRUE(torch::equal(lp, traj.log_prob[k])) << k;
    // The standardised noise of the step is N(0, 1).
    EXPECT_LT(((traj.x[k + 1] - mean) / c.std).abs().max().item<float>(), 6.0f);
  }
}

}  // namespace
}  // namespace ramflow
