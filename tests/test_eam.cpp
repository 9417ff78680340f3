// Efficient Adjoint Matching (reconstructed): exact and statistical tests.
//   * the linear reference: its velocity is the flow-matching velocity of N(0, 2C - 1), and the
//   gain
//     t s^2 / q equals eta rho of the closed-form adjoint
//   * the population fixed point is exact for a Gaussian base with a linear reward, for any C (full
//     terminal cost), and for the matching C in the first-order form
//   * the base score read from a model at a small time matches the exact score
//   * training on a Gaussian base with a linear reward reaches the exact tilt
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"

#include "ramflow/eam.h"
#include "ramflow/gaussian_mixture.h"
#include "ramflow/reward.h"
#include "ramflow/sampler.h"
#include "ramflow/trainer.h"

namespace ramflow {
namespace {

// Exact flow-matching velocity of N(mean, var) data (1-D): x_t = (1 - t) x0 + t eps, v = E[eps - x0
// | x_t].
double gaussian_velocity(double mean, double var, double x, double t) {
  const double a = 1 - t, D = a * a * var + t * t;
  return (t - a * var) / D * (x - a * mean) - mean;
}

TEST(EAMTest, LinearReferenceIsTheGaussianFlowAndTheGainIsEtaRho) {
  for (double C : {0.6, 1.0, 3.0}) {
    const double s2 = 2 * C - 1;
    for (double t : {0.1, 0.5, 0.9}) {
      auto tt = torch::full({1}, t, torch::kDouble);
      auto x = torch::full({1, 1}, 1.3, torch::kDouble);
      EXPECT_NEAR(linear_reference_velocity(x, tt, s2).item<double>(),
                  gaussian_velocity(0, s2, 1.3, t), 1e-12);
      // the fragment's rho(tau) = (2C - 1) tau / (2C tau^2 - 2 tau + 1) and eta = (1 - tau) / tau,
      // tau = 1 - t
      const double tau = 1 - t, rho = (2 * C - 1) * tau / (2 * C * tau * tau - 2 * tau + 1);
      EXPECT_NEAR(eam_gain(tt, s2).item<double>(), (1 - tau) / tau * rho, 1e-12);
    }
  }
}

// p_base = N(mu0, s0^2), r = b x, p* = N(mu0 + m b s0^2, s0^2). Sampling x0 from p*'s exact
// posterior given x_t, the conditional mean of the regression target must equal p*'s velocity at
// x_t.
TEST(EAMTest, PopulationFixedPointIsExactForGaussianWithLinearReward) {
  const double mu0 = 0.7, s02 = 0.5, b = 0.8, m = 1.5, mu_star = mu0 + m * b * s02;
  Rng rng(3);
  const auto dbl = torch::TensorOptions().dtype(torch::kDouble);
  for (double t : {0.2, 0.5, 0.8}) {
    const double a = 1 - t, D = a * a * s02 + t * t;
    for (double x : {-1.0, 0.5, 2.0}) {
      // X0 | X_t = x under p*: N(mu* + a s0^2 (x - a mu*) / D, s0^2 t^2 / D)
      auto x0 = mu_star + a * s02 * (x - a * mu_star) / D +
                std::sqrt(s02 * t * t / D) * rng.randn({400000, 1}, dbl);
      auto xt = torch::full({400000, 1}, x, dbl);
      auto tt = torch::full({400000}, t, dbl);
      const double v_star = gaussian_velocity(mu_star, s02, x, t);
      for (double C : {0.6, 1.0, 4.0}) {  // full terminal cost: exact for any reference
        const double s2 = 2 * C - 1;
        auto G = m * b - (x0 - mu0) / s02 + x0 / s2;
        auto target = linear_reference_velocity(xt, tt, s2) - eam_gain(tt, s2).unsqueeze(1) * G;
        EXPECT_NEAR(target.mean().item<double>(), v_star, 0.01)
            << "C=" << C << " t=" << t << " x=" << x;
      }
      // first order: v_ref - gain m grad r, exact when the reference variance is the base's
      const double gain = eam_gain(torch::full({1}, t, dbl), s02).item<double>();
      EXPECT_NEAR(gaussian_velocity(mu0, s02, x, t) - gain * m * b, v_star, 1e-12);
    }
  }
}

// prepare() reads grad log p_base from the base model at time delta; for the exact velocity of a
// Gaussian base the error is the smoothing, relative delta^2 / s0^2.
TEST(EAMTest, BaseScoreFromTheModelMatchesTheExactScore) {
  const double mu0 = 1.0, s0 = 0.5, m = 2.0, C = 1.5;
  auto base = make_velocity_field(
      {{"type", "exact_mixture"}, {"mixture", GaussianMixture::single({mu0}, s0).to_json()}});
  Rng rng(1);
  RolloutBatch batch;
  batch.x0 = mu0 + s0 * rng.randn({64, 1});
  batch.reward_grad = torch::full({64, 1}, 0.3f);
  batch.group_size = 64;
  EAM eam(EAMOptions().multiplier(m).c(C).score("model").score_time(0.02));
  eam.prepare(batch, Policies{*base, *base}, rng);
  auto expected = m * 0.3 - (batch.x0 - mu0) / (s0 * s0) + batch.x0 / (2 * C - 1);
  EXPECT_TRUE(torch::allclose(batch.extras.at("terminal"), expected, 0.0, 0.03))
      << (batch.extras.at("terminal") - expected).abs().max().item<double>();
  // score "none" keeps only m grad r
  RolloutBatch first = batch;
  EAM(EAMOptions().multiplier(m).score("none")).prepare(first, Policies{*base, *base}, rng);
  EXPECT_TRUE(torch::allclose(first.extras.at("terminal"), m * batch.reward_grad));
  EXPECT_THROW(EAM(EAMOptions().c(0.5)), ConfigError);
  EXPECT_THROW(EAM(EAMOptions().score("magic")), ConfigError);
}

// Training: the gauss1d base N(1, 0.5^2) with r = x and m = 2 moves its mean by s0^2 m = 0.5 and
// keeps its variance, in both forms.
TEST(EAMTest, GaussianReferenceWithLinearRewardReachesTheExactTilt) {
  const auto g = testing::gaussian_base();
  const double m = 2.0;
  for (const std::string score : {"none", "model"}) {
    // first order needs the base's variance in the reference (C = (s0^2 + 1) / 2); the full form
    // any C
    const double C =
        score == "none" ? (g.var + 1) / 2 : 1.0;  // delta 0.1: smoothing error ~ delta^2 / s0^2
    auto policy = clone_velocity_field(*g.model);
    for (auto& p : policy->parameters()) p.set_requires_grad(true);
    Trainer trainer(policy, frozen_copy(*g.model),
                    make_reward({{"type", "linear"}, {"coef", 1.0}}, 1),
                    std::make_unique<EAM>(
                        EAMOptions().multiplier(m).c(C).score(score).score_time(0.1).draws(8)),
                    TrainerOptions().sample_shape({1}).group_size(64).lr(1e-3).seed(2));
    for (int i = 0; i < 400; ++i) trainer.step();
    auto x0 = sample(trainer.policy(), g.x1, {}, SampleOptions().steps(50)).x0;
    EXPECT_NEAR(x0.mean().item<double>(), g.mean + g.var * m, 0.06) << score;
    EXPECT_NEAR(x0.var().item<double>(), g.var, 0.04) << score;
  }
}

}  // namespace
}  // namespace ramflow
