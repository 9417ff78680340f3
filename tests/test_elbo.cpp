// The ELBO of elbo.h against exact log-likelihoods:
//   * tight for the exact velocity of a Gaussian and of a two-mode mixture (any endpoint law is the
//     model's own, so the bound closes as t_min -> 0)
//   * below the data's log-likelihood in expectation for a wrong velocity, by exactly KL(p ||
//   p_model)
//   * the "elbo" weighting's draws lie in [t_min, 1) with weight (1 - t) ln(1 / t_min)
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/elbo.h"
#include "ramflow/errors.h"
#include "ramflow/exact_mixture_velocity.h"
#include "ramflow/gaussian_mixture.h"

namespace ramflow {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// Mean and standard error over the rows of a [N] tensor.
std::pair<double, double> mean_se(const torch::Tensor& x) {
  return {x.mean().item<double>(),
          x.std().item<double>() / std::sqrt(static_cast<double>(x.size(0)))};
}

TEST(ElboTest, DrawsAndWeightsOfTheTrueWeighting) {
  Rng rng(2);
  auto x0 = torch::zeros({64, 2}, kDouble);
  const double t_min = 1e-3;
  auto d = draw_elbo_points(x0, 8, "elbo", t_min, TimeDistribution(), rng);
  ASSERT_EQ(d.t.sizes(), (std::vector<int64_t>{64, 8}));
  ASSERT_EQ(d.eps.sizes(), (std::vector<int64_t>{64, 8, 2}));
  EXPECT_GE(d.t.min().item<double>(), t_min);
  EXPECT_LT(d.t.max().item<double>(), 1.0);
  EXPECT_TRUE(torch::allclose(d.weight, (1.0 - d.t) * std::log(1.0 / t_min)));
  // log-uniform: log t / log t_min is U(0, 1), mean 1/2
  EXPECT_NEAR((d.t.log() / std::log(t_min)).mean().item<double>(), 0.5, 0.03);
  auto u = draw_elbo_points(x0, 8, "uniform", t_min, TimeDistribution(), rng);
  EXPECT_TRUE(torch::equal(u.weight, torch::ones_like(u.weight)));
  EXPECT_THROW(draw_elbo_points(x0, 8, "magic", t_min, TimeDistribution(), rng), ConfigError);
}

// For the exact velocity of an endpoint law p, ELBO(x0) = log p(x0) up to O(t_min) and Monte Carlo
// error.
void expect_tight(const GaussianMixture& g, uint64_t seed) {
  auto model = ExactMixtureVelocity(g);
  Rng rng(seed);
  auto x0 = g.sample(64, rng).to(torch::kDouble);
  auto elbo = elbo_bound(*model, x0, {}, 16000, 1e-3, rng);  // [64]
  auto gap = g.log_prob(x0) - elbo;                          // >= 0 up to Monte Carlo error
  const auto [mean, se] = mean_se(gap);
  EXPECT_LT(std::abs(mean), 4 * se + 0.01) << "mean gap " << mean << " (se " << se << ")";
  // Each point on its own (16000 draws, a standard error near 0.1 nats): within 0.4 nats.
  EXPECT_LT(gap.abs().max().item<double>(), 0.4) << gap;
}

TEST(ElboTest, TightForTheExactVelocityOfAGaussian) {
  expect_tight(GaussianMixture::single({1.0, -0.5}, 0.5), 3);
}

TEST(ElboTest, TightForTheExactVelocityOfAMixture) {
  expect_tight(
      GaussianMixture::from_json(
          {{"weights", {0.3, 0.7}}, {"means", {{-1.5, 0.0}, {1.0, 1.0}}}, {"stds", {0.3, 0.6}}},
          "two modes"),
      4);
}

// Data N(mu, s^2 I); model: the exact velocity of N(mu', s'^2 I). The bound is tight for the
// model's own law, so E_data[log p_data - ELBO] = KL(N(mu, s^2) || N(mu', s'^2)) > 0: a lower bound
// of the data's log-likelihood, by the exact margin.
TEST(ElboTest, BelowTheDataLogLikelihoodByTheKL) {
  const double s = 0.5, s2 = 0.8;
  const std::vector<double> mu = {1.0, -0.5}, mu2 = {0.4, 0.2};
  auto data = GaussianMixture::single(mu, s), wrong = GaussianMixture::single(mu2, s2);
  auto model = ExactMixtureVelocity(wrong);
  Rng rng(5);
  auto x0 = data.sample(256, rng).to(torch::kDouble);
  auto gap = data.log_prob(x0) - elbo_bound(*model, x0, {}, 1000, 1e-3, rng);
  const auto [mean, se] = mean_se(gap);
  // KL of isotropic Gaussians in D = 2: D (log(s'/s) + s^2/(2 s'^2) - 1/2) + |mu - mu'|^2 / (2
  // s'^2)
  double d2 = 0;
  for (int i = 0; i < 2; ++i) d2 += (mu[i] - mu2[i]) * (mu[i] - mu2[i]);
  const double kl = 2 * (std::log(s2 / s) + s * s / (2 * s2 * s2) - 0.5) + d2 / (2 * s2 * s2);
  EXPECT_GT(mean, 0.0);
  EXPECT_NEAR(mean, kl, 4 * se + 0.02) << "KL " << kl;
}

}  // namespace
}  // namespace ramflow
