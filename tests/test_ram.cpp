// Reinforce Adjoint Matching: exact and statistical tests.
//   * zero reward: loss and gradient exactly zero at initialisation, parameters never move
//   * the population fixed point holds exactly for a Gaussian reference with a linear reward
//   * training on that case reaches the exact tilt (mean mu + s^2 b, variance s^2, velocity shift)
//   * training on the ring with the bump reward raises the reward and closes the distance to p*
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"

#include "ramflow/advantage.h"
#include "ramflow/config.h"
#include "ramflow/conventions.h"
#include "ramflow/evaluator.h"
#include "ramflow/gaussian_mixture.h"
#include "ramflow/jobs.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/pretrain.h"
#include "ramflow/ram.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"

namespace ramflow {
namespace {

using testing::pretrained;

Trainer make_trainer(VelocityFieldPtr base, RewardPtr reward, RAMOptions ram, TrainerOptions opts) {
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  return Trainer(policy, frozen_copy(*base), std::move(reward), std::make_unique<RAM>(ram),
                 std::move(opts));
}

TEST(RAMTest, ZeroRewardGivesExactlyZeroLossAndGradient) {
  auto base = make_velocity_field(MLPVelocityOptions(2).to_json());
  auto policy = clone_velocity_field(*base);
  auto ref = frozen_copy(*base);
  RAM ram(RAMOptions().multiplier(5.0).draws(4));
  Rng rng(0);
  RolloutBatch batch;
  batch.x0 = rng.randn({32, 2});
  batch.reward = torch::zeros({32});
  batch.group_size = 32;
  auto out = ram.loss(batch, Policies{*policy, *ref}, rng);
  EXPECT_EQ(out.loss.item<float>(), 0.0f);
  out.loss.backward();
  for (const auto& p : policy->parameters()) EXPECT_EQ(p.grad().abs().max().item<float>(), 0.0f);
  for (const auto& p : ref->parameters()) EXPECT_FALSE(p.grad().defined());
}

// RAM::loss (its fused CPU node for float32, LibTorch operators for float64) against Eq. 17 written
// out with operators: the same (t, eps) draws (a copy of the Rng), target = v_ref + s ((eps - x0) -
// v_copy), loss = mean (v - target)^2, and its gradient by autograd; for both stopped copies.
TEST(RAMTest, LossAndGradientMatchTheWrittenOutObjective) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (const std::string copy : {"current", "ema"}) {
      auto base = make_velocity_field(MLPVelocityOptions(2).hidden(24).to_json(), 1);
      auto policy = make_velocity_field(MLPVelocityOptions(2).hidden(24).to_json(), 2);
      auto old = make_velocity_field(MLPVelocityOptions(2).hidden(24).to_json(), 3);
      for (auto* m : {&base, &policy, &old}) (*m)->to(dtype);
      const int64_t B = 6, K = 3;
      RAM ram(RAMOptions().multiplier(2.0).draws(K).target_copy(copy));
      Rng data(4);
      RolloutBatch batch;
      batch.x0 = data.randn({B, 2}, dtype);
      batch.reward = data.rand({B}, dtype);
      batch.group_size = B;
      Rng rng(5), replay(5);
      auto out = ram.loss(batch, Policies{*policy, *base, old.get()}, rng);
      const auto grads = torch::autograd::grad({out.loss}, policy->parameters());

      auto x0 = repeat_rows(batch.x0, K);
      auto t = RAMOptions().time().sample(B * K, replay, x0.options());
      auto eps = replay.randn(x0.sizes(), x0.options());
      auto x_t = interpolate(x0, eps, t);
      auto v = policy->forward(x_t, t, {});
      torch::Tensor v_ref, v_copy;
      {
        torch::NoGradGuard no_grad;
        v_ref = base->forward(x_t, t, {});
        v_copy = copy == "ema" ? old->forward(x_t, t, {}) : v.detach();
      }
      auto s = repeat_rows(2.0 * batch.reward, K).unsqueeze(1);  // [B*K, 1]
      auto expected = (v - (v_ref + s * ((eps - x0) - v_copy))).square().mean();
      const auto expected_grads = torch::autograd::grad({expected}, policy->parameters());
      EXPECT_NEAR(out.loss.item<double>(), expected.item<double>(), 1e-5 * expected.item<double>())
          << copy << " " << dtype;
      EXPECT_NEAR(out.metrics.at("drift_from_ref"), (v - v_ref).square().mean().item<double>(),
                  1e-6)
          << copy;
      for (size_t i = 0; i < grads.size(); ++i)
        EXPECT_LT((grads[i] - expected_grads[i]).abs().max().item<double>(),
                  1e-5 * expected_grads[i].abs().max().item<double>() + 1e-9)
            << copy << " " << dtype << " parameter " << i;
    }
  }
}

TEST(RAMTest, ZeroRewardNeverMovesTheParameters) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(32).to_json());
  auto zero = make_reward({{"type", "linear"}, {"coef", {0.0, 0.0}}}, 2);
  auto trainer = make_trainer(base, zero, RAMOptions().multiplier(5.0),
                              TrainerOptions().sample_shape({2}).group_size(16).lr(1e-2));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(trainer.step().loss, 0.0);
  auto now = trainer.policy().parameters();
  auto then = base->parameters();
  for (size_t i = 0; i < now.size(); ++i) EXPECT_TRUE(torch::equal(now[i], then[i]));
}

TEST(RAMTest, SignalsAreCentredAndScaledPerGroup) {
  RolloutBatch batch;
  batch.reward = torch::tensor({1.0f, 2.0f, 3.0f, 10.0f, 10.0f, 40.0f});
  batch.groups = 2;
  batch.group_size = 3;
  auto raw = RAM(RAMOptions().multiplier(2.0)).signal(batch);
  EXPECT_TRUE(torch::allclose(raw, 2.0 * batch.reward));
  auto c = RAM(RAMOptions().multiplier(2.0).signal("centered")).signal(batch).reshape({2, 3});
  EXPECT_TRUE(torch::allclose(c.sum(1), torch::zeros({2}), 0, 1e-5));
  EXPECT_TRUE(torch::allclose(c[0], torch::tensor({-2.0f, 0.0f, 2.0f})));
  auto n = RAM(RAMOptions().multiplier(1.0).signal("normalized")).signal(batch).reshape({2, 3});
  EXPECT_TRUE(torch::allclose(n.std(1, /*unbiased=*/false), torch::ones({2}), 1e-3));
  auto step = normalized_advantage(batch.reward, 3, "step", 1e-4);
  EXPECT_NEAR(step.reshape({2, 3})[0][2].item<float>(),
              1.0f / batch.reward.std(false).item<float>(), 1e-4);
  EXPECT_THROW(RAM(RAMOptions().signal("magic")), ConfigError);
}

// The fixed-point equation  v* - v_ref = E*[ b X0 ((eps - X0) - v*) | X_t = x ]  holds exactly when
// p_ref is N(mu0, s^2), r(x) = b x and p* = N(mu0 + s^2 b, s^2). Checked by exact posterior
// sampling.
TEST(RAMTest, PopulationFixedPointIsExactForGaussianWithLinearReward) {
  const double mu0 = 0.7, s2 = 1.5, b = 0.8, mu_star = mu0 + s2 * b;
  auto v_of = [&](double mean, double x, double t) {  // exact FM velocity of N(mean, s2)
    const double a = 1 - t, D = a * a * s2 + t * t;
    return (t - a * s2) / D * (x - a * mean) - mean;
  };
  Rng rng(21);
  for (double t : {0.1, 0.5, 0.9}) {
    for (double x : {-1.0, 0.5, 2.0}) {
      const double a = 1 - t, D = a * a * s2 + t * t;
      // X0 | X_t = x under p*: N(mu_star + a s2 (x - a mu_star) / D, s2 t^2 / D);  eps = (x - a X0)
      // / t.
      const double post_mean = mu_star + a * s2 * (x - a * mu_star) / D;
      const double post_std = std::sqrt(s2 * t * t / D);
      auto x0 =
          post_mean + post_std * rng.randn({400000}, torch::TensorOptions().dtype(torch::kDouble));
      auto eps = (x - a * x0) / t;
      const double v_star = v_of(mu_star, x, t), v_ref = v_of(mu0, x, t);
      const double rhs = (b * x0 * ((eps - x0) - v_star)).mean().item<double>();
      EXPECT_NEAR(v_star - v_ref, -b * s2 * t / D, 1e-12);  // the closed-form shift
      EXPECT_NEAR(rhs, v_star - v_ref, 0.02) << "t=" << t << " x=" << x;
    }
  }
}

// Training: a 1-D Gaussian base with a linear reward converges to the exact tilt. The group-centred
// signal is used: with the raw signal m r the mean signal here is about 3, so the loss mostly
// re-fits the model to its own 25-step Euler samples, and that self-distillation of the sampler's
// error shrinks the variance step after step (measured: variance 0.17 instead of 0.24 after 600
// steps). Centring removes the constant part and leaves the fixed point unchanged (up to the factor
// 1 - 1/G on m).
TEST(RAMTest, GaussianReferenceWithLinearRewardReachesTheExactTilt) {
  const auto g = testing::gaussian_base();  // N(1, 0.5^2)
  const auto& base = g.model;
  const auto& x1 = g.x1;
  const double mu = g.mean, s2 = g.var;
  Rng rng(6);
  ASSERT_NEAR(mu, 1.0, 0.05);
  ASSERT_NEAR(s2, 0.25, 0.03);
  const double m = 2.0, coef = 1.0, b = m * coef;  // r = x, m = 2: mean moves by s^2 b = 0.5
  auto trainer = make_trainer(base, make_reward({{"type", "linear"}, {"coef", coef}}, 1),
                              RAMOptions().multiplier(m).draws(8).signal("centered"),
                              TrainerOptions().sample_shape({1}).group_size(64).lr(3e-4).seed(1));
  for (int i = 0; i < 1200; ++i) trainer.step();
  auto x0 = sample(trainer.policy(), x1, {}, SampleOptions().steps(50)).x0;
  const double b_eff = b * (1.0 - 1.0 / 64);  // centring within a group of G scales m by 1 - 1/G
  EXPECT_NEAR(x0.mean().item<double>(), mu + s2 * b_eff, 0.05);
  EXPECT_NEAR(x0.var().item<double>(), s2, 0.03);
  // The learned velocity shift against  -b s^2 t / ((1-t)^2 s^2 + t^2), averaged over x ~ p*_t.
  torch::NoGradGuard no_grad;
  for (double t : {0.25, 0.5, 0.75}) {
    const double a = 1 - t, D = a * a * s2 + t * t;
    auto xt = a * (mu + s2 * b) + std::sqrt(D) * rng.randn({4096, 1});
    auto tt = torch::full({4096}, t);
    auto shift =
        (trainer.policy().forward(xt, tt) - trainer.ref().forward(xt, tt)).mean().item<double>();
    EXPECT_NEAR(shift, -b_eff * s2 * t / D, 0.1) << "t=" << t;
  }
}

// Training: the ring with the bump reward at (4, 0), m = 5 (the default job, shortened).
TEST(RAMTest, RingWithBumpRewardMovesTowardTheExactTarget) {
  auto task = make_task("ring");
  auto base = pretrained(*task, task->default_model(), 3000);
  auto reward = make_reward({{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}}, 2);
  Evaluator eval(task, reward, 5.0, *base, EvalOptions().samples(1000).pool(8000));
  const auto before = eval.evaluate(*base);
  auto trainer = make_trainer(base, reward, RAMOptions().multiplier(5.0).draws(4),
                              TrainerOptions().sample_shape({2}).group_size(32).lr(2e-4).seed(0));
  for (int i = 0; i < 300; ++i) trainer.step();
  const auto after = eval.evaluate(trainer.policy());
  const double optimal = eval.target().reward_optimal;
  EXPECT_GT(optimal, 0.8);
  EXPECT_NEAR(before.reward_mean, eval.target().reward_base, 0.05);
  // Reward rises at least 40% of the way from the base to the optimum; distance at least halves.
  EXPECT_GT(after.reward_mean - before.reward_mean, 0.4 * (optimal - before.reward_mean))
      << before.reward_mean << " -> " << after.reward_mean << " (optimal " << optimal << ")";
  EXPECT_LT(after.distance, 0.5 * before.distance) << before.distance << " -> " << after.distance;
  // The rewarded mode (index 0, at (4, 0)) gains mass.
  EXPECT_GT(after.mode_masses[0].item<double>(), before.mode_masses[0].item<double>() + 0.15);
}

}  // namespace
}  // namespace ramflow
