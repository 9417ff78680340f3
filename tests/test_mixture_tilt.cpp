// Tests for Gaussian mixtures, their exact velocity, and the exact tilt p* ∝ p_ref exp(m r):
// the closed form must agree with importance resampling.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/evaluator.h"
#include "ramflow/exact_mixture_velocity.h"
#include "ramflow/metrics.h"
#include "ramflow/reward.h"
#include "ramflow/sampler.h"
#include "ramflow/tilt.h"

namespace ramflow {
namespace {

GaussianMixture skewed_mixture() {
  return GaussianMixture::from_json(
      {{"weights", {0.5, 0.3, 0.2}},
       {"means", {{-2.0, 0.0}, {2.0, 1.0}, {0.0, -3.0}}},
       {"covs", {{{0.5, 0.1}, {0.1, 0.3}}, {{0.2, 0.0}, {0.0, 0.6}}, {{0.4, -0.2}, {-0.2, 0.4}}}}},
      "test mixture");
}

TEST(MixtureTest, ExactVelocityTransportsNoiseToTheMixture) {
  // Integrating the exact velocity from N(0, I) must reproduce the mixture's moments.
  auto g = skewed_mixture();
  auto model = ExactMixtureVelocity(g);
  Rng rng(1);
  auto x0 = sample(*model, rng.randn({20000, 2}, torch::TensorOptions().dtype(torch::kDouble)), {},
                   SampleOptions().sampler("heun").steps(100))
                .x0;
  auto mean = (g.weights.unsqueeze(1) * g.means).sum(0);
  EXPECT_TRUE(torch::allclose(x0.mean(0), mean, 0, 0.05)) << x0.mean(0) << mean;
  auto masses = mode_masses(x0, g.means);
  EXPECT_TRUE(torch::allclose(masses, g.weights, 0, 0.015)) << masses;
}

TEST(MixtureTest, VelocityIsTheConditionalExpectationAtTheEnds) {
  // t = 1: x_1 = eps, so v(x, 1) = x - E[x0] ; t -> 0: v(x, 0) = E[eps | x0 = x] - x = -x.
  auto g = GaussianMixture::single({1.0, -1.0}, 0.5);
  auto x = torch::tensor({{0.3, 0.7}, {-1.0, 2.0}}, torch::kDouble);
  auto v1 = mixture_velocity(g, x, torch::ones({2}, torch::kDouble));
  EXPECT_TRUE(torch::allclose(v1, x - g.means[0], 0, 1e-12));
  auto v0 = mixture_velocity(g, x, torch::zeros({2}, torch::kDouble));
  EXPECT_TRUE(torch::allclose(v0, -x, 0, 1e-12));
}

TEST(MixtureTest, FromJsonValidates) {
  EXPECT_THROW(GaussianMixture::from_json({{"means", {{0, 0}, {1}}}}, "m"), ConfigError);
  EXPECT_THROW(GaussianMixture::from_json({{"means", {0, 1}}, {"weights", {1}}}, "m"), ConfigError);
  EXPECT_THROW(GaussianMixture::from_json({{"means", {0}}, {"stds", {-1}}}, "m"), ConfigError);
  EXPECT_THROW(GaussianMixture::from_json({{"means", {0}}, {"extra", 1}}, "m"), ConfigError);
  auto g = GaussianMixture::from_json({{"means", {{0, 0}, {3, 0}}}, {"stds", {1, 2}}}, "m");
  EXPECT_DOUBLE_EQ(g.covs[1][1][1].item<double>(), 4.0);
  EXPECT_DOUBLE_EQ(g.weights[0].item<double>(), 0.5);
}

// Closed form vs importance resampling of a large pool from the same mixture.
void expect_tilts_agree(const GaussianMixture& g, const nlohmann::json& reward_spec, double m) {
  auto reward = make_reward(reward_spec, g.dim());
  auto form = reward->quadratic_form();
  ASSERT_TRUE(form.has_value());
  auto closed = tilt_mixture(g, *form, m);
  Rng rng(7);
  auto pool = g.sample(400000, rng);
  auto r = reward->score(pool);
  auto is = importance_tilt(pool, r, m);
  ASSERT_GT(is.ess, 5000) << "pool too small for this tilt";
  // Mean, mode masses and expected reward.
  auto is_mean = (is.w.unsqueeze(1) * is.x.to(torch::kDouble)).sum(0);
  auto cf_mean = (closed.weights.unsqueeze(1) * closed.means).sum(0);
  EXPECT_TRUE(torch::allclose(is_mean, cf_mean, 0, 0.03)) << is_mean << cf_mean;
  auto is_masses = mode_masses(is.x, g.means, is.w);
  // With well-separated modes, nearest-mode mass of the tilted law ≈ its component weights.
  EXPECT_TRUE(torch::allclose(is_masses, closed.weights, 0, 0.02)) << is_masses << closed.weights;
  const double is_reward = torch::dot(is.w, r.to(torch::kDouble)).item<double>();
  EXPECT_NEAR(is_reward, expected_quadratic_reward(closed, *form), 0.02);
  // The tilted covariance of the dominant component matches the weighted covariance near it.
  auto k = closed.weights.argmax().item<int64_t>();
  auto near = torch::cdist(is.x, g.means.to(torch::kFloat)).argmin(1) == k;
  auto wk = is.w * near.to(torch::kDouble);
  wk = wk / wk.sum();
  auto xk = is.x.to(torch::kDouble);
  auto mk = (wk.unsqueeze(1) * xk).sum(0);
  auto ck = torch::matmul((wk.unsqueeze(1) * (xk - mk)).t(), xk - mk);
  EXPECT_TRUE(torch::allclose(ck, closed.covs[k], 0, 0.03)) << ck << closed.covs[k];
}

TEST(TiltTest, ClosedFormMatchesImportanceResamplingLinear) {
  expect_tilts_agree(skewed_mixture(), {{"type", "linear"}, {"coef", {0.6, -0.3}}}, 1.5);
}

TEST(TiltTest, ClosedFormMatchesImportanceResamplingQuadratic) {
  expect_tilts_agree(
      skewed_mixture(),
      {{"type", "quadratic"}, {"center", {1.0, 0.5}}, {"q", {{0.8, 0.2}, {0.2, 0.5}}}}, 1.0);
}

TEST(TiltTest, ClosedFormMatchesImportanceResamplingSumOnTheRing) {
  expect_tilts_agree(
      GaussianMixture::ring(),
      {{"type", "sum"},
       {"terms",
        {{{"type", "linear"}, {"coef", {1.0, 0.0}}, {"weight", 0.5}},
         {{"type", "quadratic"}, {"center", {0.0, 4.0}}, {"q", 0.3}, {"weight", 1.0}}}}},
      1.0);
}

TEST(TiltTest, LinearTiltOfAGaussianShiftsTheMeanBySigmaB) {
  // N(mu, Sigma) tilted by exp(m b.x) is N(mu + Sigma m b, Sigma), exactly.
  auto g = GaussianMixture::single({0.7, -0.2}, 1.2);
  QuadraticForm f{torch::zeros({2, 2}, torch::kDouble), torch::tensor({0.8, 0.1}, torch::kDouble),
                  0};
  auto t = tilt_mixture(g, f, 2.0);
  auto expect = g.means[0] + 1.44 * 2.0 * f.b;
  EXPECT_TRUE(torch::allclose(t.means[0], expect, 0, 1e-12));
  EXPECT_TRUE(torch::allclose(t.covs[0], g.covs[0], 0, 1e-12));
}

TEST(TiltTest, NonNormalisableTiltIsRefused) {
  auto g = GaussianMixture::single({0.0}, 1.0);
  QuadraticForm f{-2.0 * torch::eye(1, torch::kDouble), torch::zeros({1}, torch::kDouble),
                  0};  // r = +x^2
  EXPECT_THROW(tilt_mixture(g, f, 1.0), ConfigError);
}

}  // namespace
}  // namespace ramflow

namespace ramflow {
namespace {

// A conditional pool is tilted within each class: the frontier's reward and KL are the class-share
// weighted means of each class's own tilt, computed here in closed form on a two-value reward.
TEST(TiltTest, ConditionalPoolTiltsEachClass) {
  ExactTarget t;
  // class 0: rewards {0, 1} (share 2/6); class 1: rewards {0, 0, 0, 2} (share 4/6)
  t.rewards = torch::tensor({0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 2.0f});
  t.pool_cond = Condition::classes(torch::tensor(std::vector<int64_t>{0, 0, 1, 1, 1, 1}));
  const double m = 1.5;
  const auto p = t.frontier({m}).front();
  // class 0: w = (1, e^m) / (1 + e^m); E[r] = e^m / (1 + e^m); log Z = log((1 + e^m) / 2)
  const double e0 = std::exp(m) / (1 + std::exp(m)), z0 = std::log((1 + std::exp(m)) / 2);
  // class 1: E[r] = 2 e^{2m} / (3 + e^{2m}); log Z = log((3 + e^{2m}) / 4)
  const double e1 = 2 * std::exp(2 * m) / (3 + std::exp(2 * m)),
               z1 = std::log((3 + std::exp(2 * m)) / 4);
  EXPECT_NEAR(p.reward, (2.0 * e0 + 4.0 * e1) / 6.0, 1e-6);
  EXPECT_NEAR(p.kl, (2.0 * (m * e0 - z0) + 4.0 * (m * e1 - z1)) / 6.0, 1e-6);
  // Without classes the same pool is one tilt, with another answer.
  t.pool_cond = Condition();
  EXPECT_GT(std::abs(t.frontier({m}).front().reward - p.reward), 1e-3);
}

}  // namespace
}  // namespace ramflow
