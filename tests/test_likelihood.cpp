// ODE log-likelihoods (likelihood.h) against closed-form densities: the exact velocity of a
// Gaussian mixture carries N(0, I) to the mixture, so the change of variables must return the
// mixture's log p.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/exact_mixture_velocity.h"
#include "ramflow/gaussian_mixture.h"
#include "ramflow/likelihood.h"

namespace ramflow {
namespace {

GaussianMixture two_modes() {
  return GaussianMixture::from_json(
      {{"weights", {0.3, 0.7}},
       {"means", {{-1.5, 0.0}, {1.0, 1.0}}},
       {"covs", {{{0.3, 0.1}, {0.1, 0.2}}, {{0.5, 0.0}, {0.0, 0.25}}}}},
      "two modes");
}

TEST(LikelihoodTest, AnEstimateThatSaysNothingIsNoNumber) {
  EXPECT_EQ((KLEstimate{2.052, 0.082}.text()), "2.052 ± 0.082");
  EXPECT_TRUE((KLEstimate{2.052, 0.082}.reliable()));
  EXPECT_EQ((KLEstimate{0, 0}.text()), "0");  // the base against itself
  EXPECT_EQ((KLEstimate{12.102, 40.104}.text()), "n/a (too noisy: ± 40.104)");
  EXPECT_EQ((KLEstimate{-10.565, 2.0}.text()), "n/a (negative: the estimator failed)");
  EXPECT_FALSE((KLEstimate{-0.1, 0.2}.reliable()));  // noise around a small KL
  EXPECT_EQ((KLEstimate{-0.1, 0.2}.text()), "n/a (too noisy: ± 0.200)");
  EXPECT_FALSE((KLEstimate{-0.3, 0.2}.reliable()));  // a KL is never negative
  EXPECT_TRUE((KLEstimate{0.3, 0.2}.reliable()));
  EXPECT_EQ((KLEstimate{1.5, std::nan("")}.text()), "1.500");  // no standard error recorded
  EXPECT_FALSE((KLEstimate{std::nan(""), 1.0}.reliable()));
}

TEST(LikelihoodTest, ExactDivergenceGivesTheMixturesLogDensity) {
  auto g = two_modes();
  auto model = ExactMixtureVelocity(g);
  Rng rng(1);
  auto x0 = g.sample(128, rng).to(torch::kDouble);
  auto lp = ode_log_likelihood(*model, x0, {}, LikelihoodOptions().steps(200).divergence("exact"));
  auto err = (lp - g.log_prob(x0)).abs();
  EXPECT_LT(err.max().item<double>(), 0.02) << "worst " << err.max().item<double>();
}

TEST(LikelihoodTest, HutchinsonIsUnbiased) {
  auto g = two_modes();
  auto model = ExactMixtureVelocity(g);
  Rng rng(2);
  auto x0 = g.sample(512, rng).to(torch::kDouble);
  auto lp = ode_log_likelihood(*model, x0, {},
                               LikelihoodOptions().steps(100).divergence("hutchinson"), &rng);
  auto diff = lp - g.log_prob(x0);
  const double mean = diff.mean().item<double>(), se = diff.std().item<double>() / std::sqrt(512.0);
  EXPECT_LT(std::abs(mean), 4 * se + 0.02) << "mean " << mean << " se " << se;
  EXPECT_GT(diff.std().item<double>(), 1e-3);  // it is an estimate, not the exact trace
  EXPECT_THROW(ode_log_likelihood(*model, x0, {}, LikelihoodOptions().divergence("magic")),
               ConfigError);
}

// KL(N(mu, s^2 I) || N(mu', s'^2 I)) in closed form against the estimate from the two exact
// velocities.
TEST(LikelihoodTest, KLBetweenTwoGaussiansMatchesTheClosedForm) {
  const double s = 0.5, s2 = 0.8;
  auto p = GaussianMixture::single({1.0, -0.5}, s), q = GaussianMixture::single({0.4, 0.2}, s2);
  auto vp = ExactMixtureVelocity(p), vq = ExactMixtureVelocity(q);
  Rng rng(3);
  auto x = p.sample(1000, rng).to(torch::kDouble);
  const auto est = kl_on_samples(*vp, *vq, x, {}, LikelihoodOptions().steps(100));
  const double kl =
      2 * (std::log(s2 / s) + s * s / (2 * s2 * s2) - 0.5) + (0.36 + 0.49) / (2 * s2 * s2);
  EXPECT_NEAR(est.kl, kl, 4 * est.se + 0.01) << "closed form " << kl;
}

}  // namespace
}  // namespace ramflow
