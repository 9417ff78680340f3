// The baselines beside RAM, and the contract every registered method keeps:
//   * contract (all methods, finetune defaults plus the method's preset, through the Trainer):
//   finite
//     losses, gradients only in the trainable policy, reward rising on the ring
//   * Flow-GRPO: the on-policy ratio is exactly 1; the closed-form step KL matches a Monte-Carlo
//   one
//   * Adjoint Matching: the lean adjoint equals autograd through the base chain for a linear field;
//     a Gaussian reference with a linear reward converges to the exact tilt; a non-differentiable
//     reward is refused
//   * DiffusionNFT: the policy term's gradient is zero at theta = old with r = 0.5
//   * DRaFT: re-running the last K steps reproduces the rollout's endpoint
#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"

#include "ramflow/adjoint_matching.h"
#include "ramflow/advantage.h"
#include "ramflow/awm.h"
#include "ramflow/config.h"
#include "ramflow/conventions.h"
#include "ramflow/draft.h"
#include "ramflow/elbo_pg.h"
#include "ramflow/evaluator.h"
#include "ramflow/exact_mixture_velocity.h"
#include "ramflow/flow_grpo.h"
#include "ramflow/jobs.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/nft.h"
#include "ramflow/pretrain.h"
#include "ramflow/ram_anneal.h"
#include "ramflow/ram_tilt.h"
#include "ramflow/sde.h"
#include "ramflow/task.h"
#include "ramflow/time.h"
#include "ramflow/trainer.h"

namespace ramflow {
namespace {

using testing::pretrained;

// The ring base model, pretrained once for all tests of this file.
VelocityFieldPtr ring_base() {
  static VelocityFieldPtr base =
      pretrained(*make_task("ring"), make_task("ring")->default_model(), 3000);
  return base;
}

RewardPtr bump() {
  return make_reward({{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}}, 2);
}

// A Trainer for `method` as `ramflow finetune --method NAME` would build it (defaults plus preset).
Trainer method_trainer(const std::string& name, VelocityFieldPtr base, RewardPtr reward,
                       uint64_t seed, std::vector<std::pair<std::string, std::string>> flags = {}) {
  flags.push_back({"method", name});
  auto cfg = Config::resolve(finetune_params(), "", flags);
  cfg.apply_defaults(methods().get(name).preset);
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  return Trainer(policy, frozen_copy(*base), std::move(reward), methods().get(name).make(cfg),
                 TrainerOptions()
                     .sample_shape({2})
                     .group_size(cfg.integer("group_size"))
                     .rollout(SampleOptions().steps(cfg.integer("rollout_steps")))
                     .lr(cfg.number("lr"))
                     .minibatches(cfg.integer("minibatches"))
                     .old_decay(cfg.number("old_decay"))
                     .old_ramp(cfg.number("old_ramp"))
                     .eval_ema(cfg.number("eval_ema"))
                     .seed(seed));
}

class MethodContract : public ::testing::TestWithParam<std::string> {};

TEST_P(MethodContract, FiniteLossAndGradientsOnlyInThePolicy) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json());
  auto trainer =
      method_trainer(GetParam(), base, bump(), 3, {{"group_size", "8"}, {"rollout_steps", "6"}});
  const auto before = trainer.policy().parameters();
  std::vector<torch::Tensor> start;
  for (const auto& p : before) start.push_back(p.detach().clone());
  double seconds = 0;
  for (int i = 0; i < 2; ++i) {
    auto rec = trainer.step();
    // The step's rollout time is a part of the step's time.
    EXPECT_GT(rec.rollout_seconds, 0.0);
    EXPECT_LE(rec.rollout_seconds, rec.seconds - seconds);
    seconds = rec.seconds;
    ASSERT_TRUE(std::isfinite(rec.loss));
    ASSERT_TRUE(std::isfinite(rec.grad_norm));
    EXPECT_GT(rec.grad_norm, 0.0);
  }
  bool moved = false;
  for (size_t i = 0; i < before.size(); ++i) moved = moved || !torch::equal(before[i], start[i]);
  EXPECT_TRUE(moved);
  for (const auto& p : trainer.ref().parameters()) EXPECT_FALSE(p.grad().defined());
  const auto base_params = base->parameters(), ref_params = trainer.ref().parameters();
  for (size_t i = 0; i < base_params.size(); ++i)
    EXPECT_TRUE(torch::equal(base_params[i], ref_params[i]));
  if (trainer.old()) {
    for (const auto& p : trainer.old()->parameters()) EXPECT_FALSE(p.grad().defined());
  }
}

// Each method, with its defaults, raises the reward on the ring (bump at (4, 0), m = 5) within 150
// rollouts, by at least a fifth of the way from the base reward to reward_optimal.
TEST_P(MethodContract, RewardRisesOnTheRing) {
  auto task = make_task("ring");
  auto base = ring_base();
  auto reward = bump();
  Evaluator eval(task, reward, 5.0, *base, EvalOptions().samples(1000).pool(8000));
  const auto before = eval.evaluate(*base);
  auto trainer = method_trainer(GetParam(), base, reward, 0);
  for (int i = 0; i < 150; ++i) trainer.step();
  const auto after = eval.evaluate(trainer.policy());
  const double optimal = eval.target().reward_optimal;
  EXPECT_GT(after.reward_mean - before.reward_mean, 0.2 * (optimal - before.reward_mean))
      << GetParam() << ": " << before.reward_mean << " -> " << after.reward_mean << " (optimal "
      << optimal << ")";
}

// Device-agnostic code: the same seed gives the same steps on a CUDA device as on the CPU (random
// numbers are drawn on the CPU and moved; the CPU runs the fused kernels, CUDA the LibTorch
// operators). Skipped where no CUDA device is available.
TEST_P(MethodContract, SameStepsOnACudaDevice) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json());
  auto base_cuda = clone_velocity_field(*base);
  base_cuda->to(torch::kCUDA);
  const std::vector<std::pair<std::string, std::string>> flags = {{"group_size", "8"},
                                                                  {"rollout_steps", "6"}};
  auto cpu = method_trainer(GetParam(), base, bump(), 3, flags);
  auto cuda = method_trainer(GetParam(), base_cuda, bump(), 3, flags);
  auto close = [](double a, double b) {
    return std::abs(a - b) <= 1e-3 * std::max(1.0, std::abs(b));
  };
  for (int i = 0; i < 2; ++i) {
    const auto a = cuda.step(), b = cpu.step();
    EXPECT_TRUE(close(a.loss, b.loss)) << "step " << i << ": loss " << a.loss << " vs " << b.loss;
    EXPECT_TRUE(close(a.reward_mean, b.reward_mean))
        << "step " << i << ": reward " << a.reward_mean << " vs " << b.reward_mean;
    EXPECT_TRUE(close(a.grad_norm, b.grad_norm))
        << "step " << i << ": grad norm " << a.grad_norm << " vs " << b.grad_norm;
  }
  const auto pa = cuda.policy().parameters(), pb = cpu.policy().parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(pa[i].device().is_cuda());
    EXPECT_LT((pa[i].cpu() - pb[i]).abs().max().item<double>(), 1e-4) << "parameter " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllMethods, MethodContract, ::testing::ValuesIn(methods().names()),
                         testing::param_name);

TEST(FlowGRPOTest, OnPolicyRatioIsExactlyOne) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(32).to_json());
  for (const char* reduce : {"mean", "sum"}) {
    auto trainer =
        method_trainer("flow-grpo", base, bump(), 1,
                       {{"minibatches", "1"}, {"grpo_log_prob", reduce}, {"grpo_kl", "0.1"}});
    for (int i = 0; i < 3; ++i) {
      auto rec = trainer.step();
      EXPECT_EQ(rec.metrics.at("ratio_max_deviation"), 0.0) << reduce << " step " << i;
      EXPECT_EQ(rec.metrics.at("ratio_mean"), 1.0);
    }
  }
  // The second minibatch is off-policy: its ratio moves.
  auto trainer =
      method_trainer("flow-grpo", base, bump(), 1, {{"minibatches", "2"}, {"lr", "1e-2"}});
  EXPECT_GT(trainer.step().metrics.at("ratio_max_deviation"), 0.0);
}

// With guidance, Flow-GRPO's rollouts and its loss both use the guided velocity v_u + w (v_c - v_u)
// (its released code computes log-probabilities with CFG): on the first minibatch the ratio is
// 1 (to float rounding: the loss evaluates the steps in other batches than the rollout). A loss on
// the conditional velocity alone would make it differ by orders of magnitude more.
TEST(FlowGRPOTest, GuidedRolloutsAndLossAgree) {
  const TaskPtr task = make_task("ring-prompts");
  auto base = make_velocity_field(task->default_model(), 3);
  auto cfg = Config::resolve(finetune_params(), "", {{"method", "flow-grpo"}});
  cfg.apply_defaults(methods().get("flow-grpo").preset);
  const ConditionSource cond{
      [task](int64_t groups, Rng& rng) { return task->sample_conditions(groups, rng); },
      task->null_condition()};
  auto make = [&](double scale) {
    auto policy = clone_velocity_field(*base);
    for (auto& p : policy->parameters()) p.set_requires_grad(true);
    return Trainer(policy, frozen_copy(*base), bump(), methods().get("flow-grpo").make(cfg),
                   TrainerOptions().sample_shape({2}).groups(2).group_size(8).cfg(scale).rollout(
                       SampleOptions().steps(6)),
                   cond);
  };
  Trainer trainer = make(2.0), unguided = make(1.0);
  for (int i = 0; i < 2; ++i) {
    const auto rec = trainer.step();
    EXPECT_LT(rec.metrics.at("ratio_max_deviation"), 1e-5) << "step " << i;
    // The rollouts are guided: the same noise gives other endpoints than without guidance.
    if (i == 0) {
      EXPECT_NE(rec.reward_mean, unguided.step().reward_mean);
    }
  }
  // Adjoint Matching keeps its trajectory without a guided loss: guidance is refused.
  auto am = Config::resolve(finetune_params(), "", {{"method", "adjoint-matching"}});
  EXPECT_THROW(Trainer::check(TrainerOptions().sample_shape({2}).cfg(2.0),
                              *methods().get("adjoint-matching").make(am), *bump()),
               ConfigError);
}

TEST(FlowGRPOTest, ClosedFormKLMatchesMonteCarlo) {
  // Two Gaussian flows whose velocities differ by O(1), so that the KL dwarfs the Monte-Carlo
  // error.
  auto policy = ExactMixtureVelocity(GaussianMixture::single({1.0, -1.0}, 0.5));
  auto ref = ExactMixtureVelocity(GaussianMixture::single({-0.5, 1.5}, 0.8));
  Rng rng(4);
  // Zero rewards: every advantage is 0, so keep those samples in the loss (the released code drops
  // them).
  FlowGRPO grpo(FlowGRPOOptions().kl(1.0).kl_form("exact").log_prob("sum").drop_zero_adv(false));
  const int64_t B = 16, N = 8;
  std::vector<int64_t> all;
  for (int64_t k = 0; k < N; ++k) all.push_back(k);
  auto traj = sample_trajectory(
      *policy, rng.randn({B, 2}, torch::kDouble), {},
      TrajectoryOptions().grid(time_grid(N)).noise_level(0.7).sde_steps(all), rng);
  RolloutBatch batch;
  batch.x0 = traj.x[N];
  batch.reward = torch::zeros({B}, torch::kDouble);
  batch.group_size = B;
  batch.grid = traj.grid;
  batch.trajectory = traj.x;
  batch.log_prob = traj.log_prob;
  batch.sde_steps = traj.sde_steps;
  grpo.prepare(batch, Policies{*policy, *ref}, rng);
  const double closed = grpo.loss(batch, Policies{*policy, *ref}, rng).metrics.at("kl_ref");
  // Monte Carlo: E over y ~ pi_theta(. | x_k) of log pi_theta(y) - log pi_ref(y), true (summed)
  // densities.
  torch::NoGradGuard no_grad;
  double mc = 0;
  const auto steps = grpo.trained_steps(traj.sde_steps, N);
  for (int64_t k : steps) {
    const auto c = sde_coefficients(0.7, traj.grid[k], traj.grid[k + 1]);
    auto x = traj.x[k].repeat({4000, 1});  // [4000 B, 2]
    auto t = torch::full({x.size(0)}, traj.grid[k], torch::kDouble);
    auto mu = x * c.x_coef + policy->forward(x, t) * c.v_coef;
    auto mu_ref = x * c.x_coef + ref->forward(x, t) * c.v_coef;
    auto y = mu + c.std * rng.randn(x.sizes(), torch::kDouble);
    mc += (gaussian_log_prob(y, mu, c.std, "sum") - gaussian_log_prob(y, mu_ref, c.std, "sum"))
              .mean()
              .item<double>();
  }
  mc /= static_cast<double>(steps.size());
  EXPECT_GT(closed, 0.05);
  EXPECT_NEAR(closed, mc, 0.02 * closed) << "closed form " << closed << ", Monte Carlo " << mc;
  // With the released code's mean log-density the KL is averaged over the D = 2 coordinates as
  // well: both terms of the loss on one scale.
  FlowGRPO mean(FlowGRPOOptions().kl(1.0).kl_form("exact").log_prob("mean").drop_zero_adv(false));
  mean.prepare(batch, Policies{*policy, *ref}, rng);
  EXPECT_NEAR(mean.loss(batch, Policies{*policy, *ref}, rng).metrics.at("kl_ref"), closed / 2.0,
              1e-9 * closed);
}

TEST(FlowGRPOTest, ZeroAdvantageSamplesLeaveTheLoss) {
  // Two groups of 4: the first has equal rewards (advantage exactly 0), the second does not.
  // Dropping zero-advantage samples makes the loss (policy term and KL) that of the second group
  // alone.
  auto policy = ExactMixtureVelocity(GaussianMixture::single({1.0, -1.0}, 0.5));
  auto ref = ExactMixtureVelocity(GaussianMixture::single({-0.5, 1.5}, 0.8));
  const int64_t G = 4, N = 6;
  std::vector<int64_t> all;
  for (int64_t k = 0; k < N; ++k) all.push_back(k);
  Rng rng(9);
  auto traj = sample_trajectory(
      *policy, rng.randn({2 * G, 2}, torch::kDouble), {},
      TrajectoryOptions().grid(time_grid(N)).noise_level(0.7).sde_steps(all), rng);
  // The stored log-densities are perturbed so that the ratio differs from 1 and the policy term is
  // not 0.
  auto make = [&](int64_t begin, int64_t end, torch::Tensor reward) {
    RolloutBatch b;
    b.x0 = traj.x[N].slice(0, begin, end);
    b.reward = reward;
    b.groups = (end - begin) / G;
    b.group_size = G;
    b.grid = traj.grid;
    b.trajectory = traj.x.slice(1, begin, end);
    b.log_prob = traj.log_prob.slice(1, begin, end) + 0.01;
    b.sde_steps = traj.sde_steps;
    return b;
  };
  auto r = torch::tensor({0.5, 0.5, 0.5, 0.5, 0.1, 0.9, 0.3, 0.6}, torch::kDouble);
  FlowGRPO grpo(FlowGRPOOptions().kl(0.3).std_scope("group").drop_zero_adv(true));
  auto both = make(0, 2 * G, r), second = make(G, 2 * G, r.slice(0, G, 2 * G));
  grpo.prepare(both, Policies{*policy, *ref}, rng);
  grpo.prepare(second, Policies{*policy, *ref}, rng);
  const auto l_both = grpo.loss(both, Policies{*policy, *ref}, rng);
  const auto l_second = grpo.loss(second, Policies{*policy, *ref}, rng);
  EXPECT_NEAR(l_both.loss.item<double>(), l_second.loss.item<double>(), 1e-12);
  EXPECT_NEAR(l_both.metrics.at("kept_fraction"), 0.5, 1e-12);
  // Kept, the flat group dilutes the mean: the loss differs.
  FlowGRPO keep_all(FlowGRPOOptions().kl(0.3).std_scope("group").drop_zero_adv(false));
  keep_all.prepare(both, Policies{*policy, *ref}, rng);
  EXPECT_GT(std::abs(keep_all.loss(both, Policies{*policy, *ref}, rng).loss.item<double>() -
                     l_second.loss.item<double>()),
            1e-6);
}

TEST(AdjointMatchingTest, LeanAdjointEqualsAutogradThroughTheBaseChain) {
  // A Gaussian base has a velocity affine in x, so its Jacobian does not depend on the path: the
  // lean adjoint on any stored path equals the gradient through the base's own SDE chain with the
  // same noise.
  auto base = ExactMixtureVelocity(GaussianMixture::single({1.0, -0.5}, 0.7));
  auto other = ExactMixtureVelocity(GaussianMixture::single({-2.0, 0.3}, 1.3));  // draws the path
  const int64_t B = 6, N = 12;
  const double a = std::sqrt(2.0), m = 3.0;
  const auto grid = time_grid(N, 2.0);
  std::vector<int64_t> all;
  for (int64_t k = 0; k < N; ++k) all.push_back(k);
  Rng rng(9);
  auto traj = sample_trajectory(*other, rng.randn({B, 2}, torch::kDouble), {},
                                TrajectoryOptions().grid(grid).noise_level(a).sde_steps(all), rng);
  auto coef = torch::tensor({0.8, -1.7}, torch::kDouble);  // r(x) = coef . x
  auto terminal = -m * coef.expand({B, 2});
  auto adjoint = lean_adjoint(*base, grid, traj.x, {}, terminal, a);
  for (int64_t j : {int64_t{0}, int64_t{1}, int64_t{5}, N - 1}) {
    auto x = traj.x[j].clone().requires_grad_(true);
    torch::Tensor y = x;
    for (int64_t k = j; k < N; ++k) {  // the base chain, with fixed noise
      auto step = sde_step(y, base->forward(y, torch::full({B}, grid[k], torch::kDouble)), a,
                           grid[k], grid[k + 1]);
      y = step.mean + step.std * torch::randn({B, 2}, torch::kDouble);
    }
    auto g = -m * torch::mv(y, coef).sum();
    auto grad = torch::autograd::grad({g}, {x})[0];
    EXPECT_TRUE(torch::allclose(adjoint[j], grad, 1e-9, 1e-9)) << "step " << j << "\n"
                                                               << adjoint[j] << "\n"
                                                               << grad;
  }
}

TEST(AdjointMatchingTest, GaussianReferenceWithLinearRewardReachesTheExactTilt) {
  const auto g = testing::gaussian_base();  // N(1, 0.5^2)
  const auto& base = g.model;
  const auto& x1 = g.x1;
  const double mu = g.mean, s2 = g.var;
  const double m = 2.0;  // r = x: the exact tilt is N(mu + s^2 m, s^2)
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  Trainer trainer(policy, frozen_copy(*base), make_reward({{"type", "linear"}, {"coef", 1.0}}, 1),
                  std::make_unique<AdjointMatching>(AdjointMatchingOptions().multiplier(m)),
                  TrainerOptions()
                      .sample_shape({1})
                      .group_size(64)
                      .rollout(SampleOptions().steps(50))
                      .lr(1e-3)
                      .seed(1));
  // 50 rollout steps: the discrete problem's optimum approaches the exact tilt as the grid refines
  // (measured mean shifts: 91% of s^2 m at 25 steps, 102% at 50, 101% at 100).
  for (int i = 0; i < 200; ++i) trainer.step();
  auto x0 = sample(trainer.policy(), x1, {}, SampleOptions().steps(50)).x0;
  EXPECT_NEAR(x0.mean().item<double>(), mu + s2 * m, 0.06);
  EXPECT_NEAR(x0.var().item<double>(), s2, 0.04);
}

class NotDifferentiable : public Reward {
 public:
  torch::Tensor score(const torch::Tensor& x0, const Condition&) const override {
    return (x0.reshape({x0.size(0), -1}).select(1, 0) > 0).to(torch::kFloat);
  }
  bool differentiable() const override { return false; }
  nlohmann::json spec() const override { return {{"type", "sign"}}; }
};

TEST(AdjointMatchingTest, RefusesANonDifferentiableReward) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(8).to_json());
  for (const char* name : {"adjoint-matching", "draft"}) {
    try {
      method_trainer(name, base, std::make_shared<NotDifferentiable>(), 0);
      FAIL() << name << " accepted a non-differentiable reward";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("not differentiable"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(method_trainer("ram", base, std::make_shared<NotDifferentiable>(), 0));
}

TEST(NFTTest, PolicyGradientIsZeroAtTheOldPolicyWithHalfOptimality) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(32).to_json());
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  auto old = clone_velocity_field(*base), ref = frozen_copy(*base);
  Rng rng(2);
  RolloutBatch batch;
  batch.x0 = rng.randn({32, 2});
  batch.reward = rng.rand({32});
  batch.group_size = 32;
  batch.extras["optimality"] = torch::full({32}, 0.5);
  for (const char* form : {"velocity", "x0"}) {
    for (double beta : {1.0, 0.3}) {
      NFT nft(NFTOptions().beta(beta).kl(0.0).loss_form(form));
      policy->zero_grad();
      auto out = nft.loss(batch, Policies{*policy, *ref, old.get()}, rng);
      out.loss.backward();
      double worst = 0, scale = 0;
      for (const auto& p : policy->parameters())
        worst = std::max(worst, p.grad().abs().max().item<double>());
      // The same loss with r = 1 (all weight on v+) has a gradient of order one.
      batch.extras["optimality"] = torch::ones({32});
      policy->zero_grad();
      nft.loss(batch, Policies{*policy, *ref, old.get()}, rng).loss.backward();
      for (const auto& p : policy->parameters())
        scale = std::max(scale, p.grad().abs().max().item<double>());
      batch.extras["optimality"] = torch::full({32}, 0.5);
      if (beta == 1.0)
        EXPECT_EQ(worst, 0.0) << form;  // v+ = v and v- = 2 v_old - v = v exactly
      else
        EXPECT_LT(worst, 1e-5 * scale) << form << " beta " << beta;
      EXPECT_GT(scale, 1e-3) << form;
    }
  }
}

// The gradient of every parameter of `model` after `loss.backward()`, flattened into one vector.
torch::Tensor gradient_of(VelocityFieldImpl& model, const torch::Tensor& loss) {
  model.zero_grad();
  loss.backward();
  std::vector<torch::Tensor> g;
  for (const auto& p : model.parameters()) g.push_back(p.grad().reshape({-1}).clone());
  return torch::cat(g);
}

// EPG: the gradient is -A grad ELBO, with the ELBO written out here from the shared draws
// (x_t = (1 - t) x0 + t eps, weight (1 - t) ln(1/t_min), squared error summed over coordinates).
// PEPG at theta = old has ratio 1 and, with no clipping active, the same gradient.
TEST(ElboPGTest, GradientIsMinusAdvantageTimesTheGradientOfTheELBO) {
  auto policy = make_velocity_field(MLPVelocityOptions(2).hidden(32).to_json());
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  auto ref = frozen_copy(*policy);
  Rng rng(4);
  RolloutBatch batch;
  batch.x0 = rng.randn({16, 2});
  batch.reward = rng.rand({16});
  batch.group_size = 8;
  batch.groups = 2;
  const int64_t K = 3;
  ElboPG epg(ElboPGOptions().form("epg").weighting("elbo").kl(0.0).draws(K));
  Policies models{*policy, *ref};
  epg.prepare(batch, models, rng);
  const auto g_method = gradient_of(*policy, epg.loss(batch, models, rng).loss);

  const auto& t = batch.extras.at("elbo_t");      // [B, K]
  const auto& eps = batch.extras.at("elbo_eps");  // [B, K, 2]
  EXPECT_TRUE(torch::allclose(batch.extras.at("elbo_weight"), (1.0 - t) * std::log(1e3)));
  auto x0 = batch.x0.unsqueeze(1).expand({16, K, 2});
  auto x_t = (1.0 - t.unsqueeze(2)) * x0 + t.unsqueeze(2) * eps;
  auto v = policy->forward(x_t.reshape({16 * K, 2}), t.reshape({-1})).view({16, K, 2});
  auto elbo = -((1.0 - t) * std::log(1e3) * (v - (eps - x0)).square().sum(2)).mean(1);  // [B]
  auto A = normalized_advantage(batch.reward, 8, "step", 1e-4);
  const auto g_written = gradient_of(*policy, -(A * elbo).mean());
  EXPECT_TRUE(torch::allclose(g_method, g_written, 1e-4, 1e-6))
      << (g_method - g_written).abs().max().item<double>();

  ElboPG pepg(ElboPGOptions().form("pepg").weighting("elbo").kl(0.0).draws(K).clip(10.0));
  Rng rng2(4);
  RolloutBatch fresh;
  fresh.x0 = batch.x0;
  fresh.reward = batch.reward;
  fresh.group_size = 8;
  fresh.groups = 2;
  pepg.prepare(fresh, models, rng2);  // draws anew; ELBO_old from the same policy
  auto out = pepg.loss(fresh, models, rng2);
  EXPECT_DOUBLE_EQ(out.metrics.at("ratio_mean"), 1.0);
  ElboPG epg2(ElboPGOptions().form("epg").weighting("elbo").kl(0.0).draws(K));
  const auto g_pepg = gradient_of(*policy, out.loss);
  const auto g_epg = gradient_of(*policy, epg2.loss(fresh, models, rng2).loss);
  EXPECT_TRUE(torch::allclose(g_pepg, g_epg, 1e-5, 1e-7))
      << (g_pepg - g_epg).abs().max().item<double>();
  EXPECT_GT(g_epg.abs().max().item<double>(), 1e-4);
}

// AWM at theta = old: with zero advantages (equal rewards) the policy term's gradient is exactly
// zero, and the KL terms' vanish up to rounding (v_ref = v_ema = v, computed by the inference and
// the training paths). With real advantages and clip 1 the gradient is -A grad l_theta, the
// advantage-weighted surrogate.
TEST(AWMTest, PolicyGradientIsZeroAtTheOldPolicyWithZeroAdvantage) {
  auto policy = make_velocity_field(MLPVelocityOptions(2).hidden(32).to_json());
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  auto ref = frozen_copy(*policy), ema = frozen_copy(*policy);
  Policies models{*policy, *ref, ema.get()};
  Rng rng(6);
  RolloutBatch batch;
  batch.x0 = rng.randn({16, 2});
  batch.reward = torch::full({16}, 0.5f);  // exact in binary: the group mean is exact, A = 0
  batch.group_size = 16;
  for (const char* w : {"ghuber", "uniform", "t"}) {
    AWM awm(AWMOptions().weighting(w).kl(0.0).ema_kl(0.0));
    awm.prepare(batch, models, rng);
    EXPECT_EQ(gradient_of(*policy, awm.loss(batch, models, rng).loss).abs().max().item<double>(),
              0.0)
        << w;
    AWM with_kl(AWMOptions().weighting(w).kl(0.5).ema_kl(1.0));
    with_kl.prepare(batch, models, rng);
    EXPECT_LT(
        gradient_of(*policy, with_kl.loss(batch, models, rng).loss).abs().max().item<double>(),
        1e-4)
        << w;
  }
  batch.reward = rng.rand({16});
  AWM awm(AWMOptions().kl(0.0).ema_kl(0.0).draws(2));
  awm.prepare(batch, models, rng);
  const auto g_method = gradient_of(*policy, awm.loss(batch, models, rng).loss);
  const auto& t = batch.extras.at("awm_t");
  auto x0 = repeat_rows(batch.x0, 2);
  auto eps = batch.extras.at("awm_eps").reshape({32, 2});
  auto tt = t.reshape({-1});
  auto v = policy->forward((1.0 - tt.unsqueeze(1)) * x0 + tt.unsqueeze(1) * eps, tt);
  auto mse = (v - (eps - x0)).square().mean(1);
  auto l = -tt * ((mse + 1e-10).pow(0.25) - std::pow(1e-10, 0.25)) / 0.25;  // ghuber, p = 1/4
  auto A = repeat_rows(normalized_advantage(batch.reward, 16, "step", 1e-4).clamp(-5, 5) / 5.0, 2);
  const auto g_written = gradient_of(*policy, -(A * l).mean());
  EXPECT_TRUE(torch::allclose(g_method, g_written, 1e-4, 1e-7))
      << (g_method - g_written).abs().max().item<double>();
  EXPECT_GT(g_written.abs().max().item<double>(), 1e-5);
}

TEST(DRaFTTest, RerunOfTheLastStepsReproducesTheRollout) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(32).to_json());
  for (const char* k : {"1", "3"}) {
    auto trainer =
        method_trainer("draft", base, bump(), 2, {{"draft_k", k}, {"rollout_steps", "10"}});
    auto rec = trainer.step();
    EXPECT_NEAR(rec.metrics.at("rerun_reward"), rec.reward_mean, 1e-6) << "K = " << k;
  }
}

}  // namespace
}  // namespace ramflow

namespace ramflow {
namespace {

// RAM with an annealed tilt: stage s trains with m / S against a frozen copy of the model that
// ended stage s - 1, so after the stage switch the reference is the policy of that moment. The
// released code's training times: floor(N f) distinct levels of the rollout's grid per endpoint, t
// = 1 among them, and every level equally often.
TEST(NFTTest, GridTimesAreDistinctLevelsOfTheRolloutGrid) {
  NFT nft(NFTOptions().times("grid").grid_fraction(0.99));
  RolloutBatch batch;
  const int64_t B = 400, N = 10;
  batch.x0 = torch::zeros({B, 2});
  batch.grid = time_grid(N, 3.0);
  Rng rng(2);
  const auto t = nft.grid_times(batch, rng).to(torch::kDouble);  // [B * 9]
  ASSERT_EQ(t.size(0), B * 9);
  std::map<double, int64_t> count;
  const auto rows = t.view({B, 9});
  for (int64_t b = 0; b < B; ++b) {
    std::set<double> distinct;
    for (int64_t j = 0; j < 9; ++j) {
      const double tj = rows[b][j].item<double>();
      distinct.insert(tj);
      ++count[tj];
    }
    EXPECT_EQ(distinct.size(), 9u) << "endpoint " << b;
  }
  ASSERT_EQ(count.size(), 10u);  // levels t_0 = 1 .. t_9, never t_10 = 0
  EXPECT_EQ(count.count(0.0), 0u);
  EXPECT_EQ(count.count(1.0), 1u);
  for (const auto& [level, n] : count)
    EXPECT_NEAR(n, B * 9 / 10, 5 * std::sqrt(B * 0.09)) << "t = " << level;
}

TEST(RAMAnnealTest, StagesSwitchTheReferenceToThePreviousStagesModel) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json());
  auto trainer = method_trainer("ram-anneal", base, bump(), 0,
                                {{"anneal_stages", "3"},
                                 {"anneal_stage_steps", "4"},
                                 {"group_size", "8"},
                                 {"rollout_steps", "5"},
                                 {"lr", "1e-2"}});
  auto& method = dynamic_cast<RAMAnneal&>(trainer.method());
  EXPECT_DOUBLE_EQ(method.options()["stage_multiplier"].get<double>(), 5.0 / 3.0);
  std::vector<std::vector<torch::Tensor>> at_step;
  for (int64_t s = 1; s <= 14; ++s) {
    auto rec = trainer.step();
    EXPECT_EQ(rec.metrics.at("stage"), s <= 4 ? 1 : (s <= 8 ? 2 : 3)) << "step " << s;
    std::vector<torch::Tensor> snapshot;
    for (const auto& p : trainer.policy().parameters()) snapshot.push_back(p.detach().clone());
    at_step.push_back(snapshot);
  }
  EXPECT_EQ(method.stage(), 3);  // the last stage runs on
  // The loss against a reference equal to the policy, with a zero reward, is exactly zero: so a
  // zero-reward batch scored against the stage reference tells whether it is the step-8 policy.
  auto stage_ref = clone_velocity_field(trainer.policy());
  {
    torch::NoGradGuard no_grad;
    auto params = stage_ref->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(at_step[7][i]);  // after step 8
  }
  Rng rng(3);
  RolloutBatch batch;
  batch.x0 = rng.randn({8, 2});
  batch.reward = torch::zeros({8});
  batch.group_size = 8;
  Policies models{*stage_ref, trainer.ref()};
  method.prepare(batch, models, rng);
  EXPECT_EQ(method.loss(batch, models, rng).loss.item<float>(), 0.0f);
}

}  // namespace
}  // namespace ramflow

namespace ramflow {
namespace {

// The Fast (window) variant: only `window` consecutive steps inside the first half are stochastic
// and trained; the other steps are Euler steps with a zero log-density.
TEST(FlowGRPOTest, WindowVariantTrainsOnlyItsStochasticSteps) {
  FlowGRPO grpo(FlowGRPOOptions().window(3).window_end(0.5));
  const auto spec = grpo.rollout_spec();
  EXPECT_EQ(spec.window, 3);
  EXPECT_TRUE(spec.trajectory);
  EXPECT_EQ(grpo.trained_steps({4, 5, 6}, 20), (std::vector<int64_t>{4, 5, 6}));
  FlowGRPO full(FlowGRPOOptions().train_fraction(0.99));
  std::vector<int64_t> all;
  for (int64_t k = 0; k < 10; ++k) all.push_back(k);
  EXPECT_EQ(full.trained_steps(all, 10).size(), 9u);  // floor(10 * 0.99): the last step is skipped
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json());
  auto trainer =
      method_trainer("flow-grpo", base, bump(), 4,
                     {{"grpo_window", "3"}, {"rollout_steps", "20"}, {"minibatches", "1"}});
  for (int i = 0; i < 3; ++i) {
    auto rec = trainer.step();
    EXPECT_EQ(rec.metrics.at("ratio_max_deviation"), 0.0);
    EXPECT_EQ(rec.metrics.at("nfe_train"), 3.0 * 2);  // 3 steps, policy and reference
  }
}

TEST(RewardGradientTest, MatchesTheBumpsAnalyticGradient) {
  auto reward =
      make_reward({{"type", "bump"}, {"center", {4.0, -1.0}}, {"scale", 1.5}, {"height", 2.0}}, 2);
  Rng rng(6);
  auto x = rng.randn({64, 2}, torch::kDouble) * 3;
  auto c = torch::tensor({4.0, -1.0}, torch::kDouble);
  // grad h exp(-|x - c|^2 / (2 s^2)) = -r(x) (x - c) / s^2
  auto expected = -reward->score(x).unsqueeze(1) * (x - c) / (1.5 * 1.5);
  EXPECT_TRUE(torch::allclose(reward_gradient(*reward, x), expected, 1e-10, 1e-12));
  EXPECT_THROW(reward_gradient(NotDifferentiable(), x), ConfigError);
}

}  // namespace
}  // namespace ramflow

namespace ramflow {
namespace {

// ram-tilt (include/ramflow/ram_tilt.h).
TEST(RAMTiltTest, WeightsAreTheSelfNormalisedTiltOfEachGroup) {
  auto r = torch::tensor({0.0, 1.0, 2.0, 0.5, 0.5, 0.5}, torch::kDouble);
  auto w = RAMTilt::tilt_weights(r, 3, 0.7);
  auto e = (0.7 * r).exp().view({2, 3});
  auto expected = (e / e.mean(1, true)).view({-1});
  EXPECT_TRUE(torch::allclose(w, expected, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(w.slice(0, 3, 6), torch::ones({3}, torch::kDouble)));  // a flat group
  // No overflow where e^{d r} alone would overflow.
  auto big = RAMTilt::tilt_weights(torch::tensor({1000.0, 1001.0}, torch::kDouble), 2, 1.0);
  EXPECT_TRUE(torch::isfinite(big).all().item<bool>());
  EXPECT_NEAR(big.sum().item<double>(), 2.0, 1e-12);
}

// v_inner(x, t) + c0 + c1 x: perturbations of a fixed field along two test functions, so that the
// loss gradient in (c0, c1) is E[phi . dL/dv] for phi = 1 and phi = x_t.
struct PerturbedImpl : VelocityFieldImpl {
  explicit PerturbedImpl(VelocityFieldPtr inner) : inner(std::move(inner)) {
    c = register_parameter("c", torch::zeros({2}, torch::kDouble));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond) override {
    return inner->forward(x, t, cond) + c[0] + c[1] * x;
  }
  nlohmann::json spec() const override { return {{"type", "perturbed"}}; }
  VelocityFieldPtr inner;
  torch::Tensor c;
};

// The population fixed point of ram-tilt's regressions (2) and (3) is the exact tilt. A two-mode
// base in 1-D with the linear reward r(x) = x tilts into the mixture with means mu_k + d s^2 and
// weights ∝ pi_k e^{d mu_k}; RAM's first-order target is not exact here (the mode weights move
// nonlinearly). At the tilted mixture's exact velocity the loss gradient along both test functions
// vanishes (to Monte-Carlo error); at the base's it does not.
TEST(RAMTiltTest, TheExactTiltIsTheFixedPoint) {
  const double d = 1.5, s = 0.5;
  GaussianMixture base = GaussianMixture::from_json(
      {{"weights", {0.7, 0.3}}, {"means", {{-1.0}, {1.5}}}, {"stds", {s}}}, "base");
  const double w0 = 0.7 * std::exp(d * -1.0), w1 = 0.3 * std::exp(d * 1.5);
  GaussianMixture tilted =
      GaussianMixture::from_json({{"weights", {w0 / (w0 + w1), w1 / (w0 + w1)}},
                                  {"means", {{-1.0 + d * s * s}, {1.5 + d * s * s}}},
                                  {"stds", {s}}},
                                 "tilted");
  auto v_base = ExactMixtureVelocity(base), v_tilt = ExactMixtureVelocity(tilted);
  Rng rng(11);
  const int64_t N = 200000;
  RolloutBatch batch;
  batch.x0 = base.sample(N, rng).to(torch::kDouble);  // [N, 1] ~ p_s
  batch.reward = batch.x0.view({N}).clone();          // r(x) = x
  batch.groups = 1;
  batch.group_size = N;  // Z from all N endpoints
  for (bool control : {true, false}) {
    auto gradient_at = [&](VelocityFieldPtr field) {
      auto policy = std::make_shared<PerturbedImpl>(field);
      RAMTilt method(
          RAMTiltOptions().multiplier(d).stages(1).draws(2).normalizer("group").control(control));
      Policies models{*policy, *v_base};
      Rng draws(5);  // the same (t, eps) for both fields
      method.begin_step(0, models);
      method.prepare(batch, models, draws);
      method.loss(batch, models, draws).loss.backward();
      return policy->c.grad().clone();
    };
    const auto g_tilt = gradient_at(v_tilt.ptr()), g_base = gradient_at(v_base.ptr());
    for (int64_t i = 0; i < 2; ++i) {
      EXPECT_GT(std::abs(g_base[i].item<double>()), 0.1)
          << "control " << control << " component " << i;
      EXPECT_LT(std::abs(g_tilt[i].item<double>()), 0.03 * std::abs(g_base[i].item<double>()))
          << "control " << control << " component " << i << ": " << g_tilt << " against " << g_base;
    }
  }
}

TEST(RAMTiltTest, TheRunningNormaliserPoolsTheStageAndRestartsWithIt) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json());
  auto policy = clone_velocity_field(*base);
  RAMTilt method(RAMTiltOptions().multiplier(2.0).stages(2).stage_steps(3));
  Policies models{*policy, *base};
  Rng rng(1);
  auto batch_of = [&](torch::Tensor r) {
    RolloutBatch b;
    b.x0 = rng.randn({r.size(0), 2});
    b.reward = r;
    b.group_size = r.size(0);
    return b;
  };
  const double d = 1.0;  // m / S
  auto r1 = torch::tensor({0.1f, 0.9f}), r2 = torch::tensor({0.4f, 0.2f, 0.7f, 0.3f});
  method.begin_step(0, models);
  auto b1 = batch_of(r1), b2 = batch_of(r2);
  method.prepare(b1, models, rng);
  method.prepare(b2, models, rng);
  const double z = (d * torch::cat({r1, r2}).to(torch::kDouble)).exp().mean().item<double>();
  EXPECT_TRUE(torch::allclose(b2.extras.at("weight").to(torch::kDouble),
                              (d * r2.to(torch::kDouble)).exp() / z, 1e-6, 1e-6));
  method.begin_step(3, models);  // stage 2: the pool restarts
  EXPECT_EQ(method.stage(), 2);
  auto b3 = batch_of(r1);
  method.prepare(b3, models, rng);
  EXPECT_TRUE(torch::allclose(b3.extras.at("weight"), RAMTilt::tilt_weights(r1, 2, d), 1e-6, 1e-6));
}

// Stage s draws its rollouts from a frozen copy of the policy as it was when stage s began (stage
// 1: the base model itself).
TEST(RAMTiltTest, StagesDrawRolloutsFromTheFrozenModelOfTheirStart) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json());
  auto trainer = method_trainer("ram-tilt", base, bump(), 0,
                                {{"tilt_stages", "3"},
                                 {"tilt_stage_steps", "4"},
                                 {"group_size", "8"},
                                 {"rollout_steps", "5"},
                                 {"lr", "1e-2"}});
  auto& method = dynamic_cast<RAMTilt&>(trainer.method());
  Policies models{trainer.policy(), trainer.ref()};
  EXPECT_EQ(method.rollout_model(models), &trainer.ref());
  std::vector<torch::Tensor> after_4;
  for (int64_t s = 1; s <= 6; ++s) {
    auto rec = trainer.step();
    EXPECT_EQ(rec.metrics.at("stage"), s <= 4 ? 1 : 2) << "step " << s;
    if (s == 4)
      for (const auto& p : trainer.policy().parameters()) after_4.push_back(p.detach().clone());
  }
  VelocityFieldImpl* frozen = method.rollout_model(models);
  ASSERT_NE(frozen, &trainer.ref());
  const auto params = frozen->parameters();
  ASSERT_EQ(params.size(), after_4.size());
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i], after_4[i]));
  EXPECT_FALSE(torch::equal(trainer.policy().parameters()[0], after_4[0]));  // the policy moved on
}

}  // namespace
}  // namespace ramflow

namespace ramflow {
namespace {

// --eval-ema D: the evaluated model is theta_ema <- d theta_ema + (1 - d) theta after every step,
// with d = min(D, 0.1 n) at the n-th update (the first update copies the policy); the policy itself
// is untouched.
TEST(TrainerTest, EvaluationEmaFollowsThePolicyWithItsDecay) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json());
  auto trainer = method_trainer("ram", base, bump(), 0,
                                {{"eval_ema", "0.5"}, {"group_size", "8"}, {"rollout_steps", "4"}});
  EXPECT_EQ(trainer.eval_model_name(), "ema 0.5");
  EXPECT_NE(&trainer.eval_model(), &trainer.policy());
  std::vector<torch::Tensor> ema;
  for (const auto& p : trainer.policy().parameters()) ema.push_back(p.detach().clone());
  for (int64_t n = 0; n < 8; ++n) {
    trainer.step();
    const double d = std::min(0.5, 0.1 * static_cast<double>(n));
    const auto params = trainer.policy().parameters();
    for (size_t i = 0; i < ema.size(); ++i) ema[i] = d * ema[i] + (1 - d) * params[i].detach();
  }
  const auto evaluated = trainer.eval_model().parameters();
  for (size_t i = 0; i < ema.size(); ++i)
    EXPECT_TRUE(torch::allclose(evaluated[i], ema[i], 1e-6, 1e-7));
  EXPECT_FALSE(torch::equal(evaluated[0], trainer.policy().parameters()[0]));
  auto plain =
      method_trainer("ram", base, bump(), 0, {{"group_size", "8"}, {"rollout_steps", "4"}});
  EXPECT_EQ(&plain.eval_model(), &plain.policy());
  EXPECT_EQ(plain.eval_model_name(), "policy");
}

// A step's metrics are over all its minibatches: a method reporting each minibatch's index and size
// gives the mean of the indices and the size of one minibatch.
class CountingMethod : public Method {
 public:
  std::string name() const override { return "counting"; }
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng&) override {
    ++calls_;
    auto v = models.policy.forward(batch.x0, torch::full({batch.size()}, 0.5), batch.cond);
    return {
        v.square().mean(),
        {{"minibatch", static_cast<double>(calls_)}, {"rows", static_cast<double>(batch.size())}}};
  }
  nlohmann::json options() const override { return nlohmann::json::object(); }

 private:
  int64_t calls_ = 0;
};

TEST(TrainerTest, AStepsMetricsAggregateAllItsMinibatches) {
  auto base = make_velocity_field(MLPVelocityOptions(2).hidden(8).to_json());
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  Trainer trainer(policy, frozen_copy(*base),
                  make_reward({{"type", "bump"}, {"center", {4, 0}}}, 2),
                  std::make_unique<CountingMethod>(),
                  TrainerOptions().sample_shape({2}).group_size(8).minibatches(4).rollout(
                      SampleOptions().steps(2)));
  const StepRecord rec = trainer.step();
  EXPECT_DOUBLE_EQ(rec.metrics.at("minibatch"), (1 + 2 + 3 + 4) / 4.0);
  EXPECT_DOUBLE_EQ(rec.metrics.at("rows"), 2.0);
  const StepRecord next = trainer.step();
  EXPECT_DOUBLE_EQ(next.metrics.at("minibatch"), (5 + 6 + 7 + 8) / 4.0);
}

}  // namespace
}  // namespace ramflow
