#pragma once
// Evaluation of a model on held-out conditions and fixed noise, in one of two kinds
// (EvalOptions::target):
//   * the reward evaluator: mean and per-term reward, diversity, a held-out judge where one is
//   configured,
//     and KL(p_theta || p_ref) on request; for any task;
//   * the exact-target evaluator (the default), all of that and the distance to the exact
//   KL-optimal
//     target p* ∝ p_ref exp(m r), where p_ref is the *base model's* endpoint law under the
//     evaluation sampler. It draws a pool of base samples, so it suits tasks whose samples are
//     cheap.
// The exact target:
//   * The target is a pool of base-model samples with self-normalised weights exp(m r) (tilt.h);
//   its
//     weighted mean reward is `reward_optimal`, the best any method can reach at this m.
//   * For Gaussian-mixture tasks with a quadratic reward, the closed-form tilt of the *data*
//   mixture is
//     reported beside it (the two differ by the base model's pretraining error).
//   * Every model is evaluated on the same fixed noise (common random numbers), so before/after
//     differences are not sampling noise of the starting points.
//   * Conditional tasks: the evaluation and the pool request the task's evaluation conditions in
//   turn
//     (Task::evaluation_conditions: sample i asks for class i mod K), and the target is the tilt of
//     each condition, p*(x | c) ∝ p_ref(x | c) exp(m r(x, c)): the pool's weights are normalised
//     within each class. Samples and pool are drawn with the same guided sampler (`cfg`,
//     guidance.h), so p_ref is the guided base model.
//   * Image tasks with an evaluation judge (`judge`: a classifier or a text reader, grader.h): its
//     rate (accuracy, exact match), Fréchet distance, within-condition diversity and hacking
//     indicators (image_metrics.h) of every evaluated model.
#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include <torch/types.h>

#include "ramflow/communicator.h"
#include "ramflow/decoder.h"
#include "ramflow/gaussian_mixture.h"
#include "ramflow/image_metrics.h"
#include "ramflow/likelihood.h"
#include "ramflow/reward.h"
#include "ramflow/sampler.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

struct EvalOptions {
  TORCH_ARG(int64_t, samples) = 2000;  // endpoints per evaluated model
  TORCH_ARG(int64_t, pool) = 20000;    // base-model endpoints behind the importance-weighted target
  TORCH_ARG(SampleOptions, sampler) = SampleOptions().steps(50);
  TORCH_ARG(uint64_t, seed) = 1234;  // the fixed evaluation noise
  TORCH_ARG(int64_t, kl_samples) =
      500;  // samples behind KL(p_theta || p_ref) (the first of the fixed noise)
  TORCH_ARG(LikelihoodOptions, likelihood) = LikelihoodOptions().steps(50);
  TORCH_ARG(double, cfg) = 1.0;  // classifier-free guidance scale of the evaluation sampler
  TORCH_ARG(std::string,
            judge) = "";  // evaluation judge file (path or shipped name); "" = none
  /// Draw the pool and build the exact target (distances, reward_optimal, the frontier); false: the
  /// reward evaluator, whose distances are NaN.
  TORCH_ARG(bool, target) = true;
};

/// A point of the exact reward-KL frontier: the tilt p_ref exp(m r) / Z at one m.
struct FrontierPoint {
  double multiplier = 0, reward = 0, kl = 0, ess = 0;
};

struct ExactTarget {
  double multiplier = 0;       // m
  torch::Tensor pool;          // [N, D] base-model samples (flattened), float32, CPU
  Condition pool_cond;         // their N requested conditions, or empty (unconditional)
  torch::Tensor rewards;       // [N]
  torch::Tensor weights;       // [N] float64 ∝ exp(m r), sum 1
  double ess = 0;              // effective sample size of the weights
  double reward_base = 0;      // mean reward of the pool (the base model)
  double reward_optimal = 0;   // sum_i w_i r_i
  double pair_distance = 0;    // E|Y - Y'| under the weights (cached for energy distances)
  double kl_optimal = 0;       // KL(p* || p_ref) = m E*[r] - log E_ref[exp(m r)], from the pool
  torch::Tensor mode_centers;  // [M, D] data-mixture means (undefined if the task has none)
  torch::Tensor mode_masses;   // [M] target mass nearest each centre
  std::optional<GaussianMixture>
      closed_form;  // tilt of the data mixture, when it has a closed form
  double reward_optimal_closed_form = std::nan("");  // E_{closed form}[r]

  /// Energy distance from samples x [n, D] to the target; `x_pair` = E|X - X'| of x if already
  /// known.
  double distance(const torch::Tensor& x, std::optional<double> x_pair = std::nullopt) const;
  /// The reward and KL to p_ref of the tilt p_ref exp(m r) for each m, by importance weights on the
  /// pool (each point's effective sample size says how far to trust it).
  std::vector<FrontierPoint> frontier(const std::vector<double>& multipliers) const;
};

struct EvalResult {
  int64_t n = 0;
  double reward_mean = 0, reward_std = 0;
  std::map<std::string, double>
      reward_terms;                  // the mean of each named part of the reward (reward.h)
  double distance = std::nan("");    // energy distance to the exact target (NaN without one)
  double diversity = 0;              // mean pairwise distance of the samples, E|X - X'|
  double kl_to_base = std::nan("");  // KL(p_theta || p_ref) by ODE likelihoods (NaN: not asked for)
  double kl_to_base_se = std::nan("");  // its standard error over the samples
  torch::Tensor mode_masses;            // [M] (undefined if the task has no modes)
  torch::Tensor samples;  // [n, ...] the decoded endpoints (what the reward scored), CPU
  torch::Tensor latents;  // [n, ...] the model's own endpoints (= samples with no decoder), CPU
  Condition cond;         // their n requested conditions, or empty
  std::optional<ImageMetrics> image;  // with an evaluation classifier
};

class Evaluator {
 public:
  /// Draws the pool from `base` and builds the exact target (options.target()). `base` is not
  /// modified. With a decoder, `reward` scores decoded samples, and the target, the distances and
  /// the judge live in decoded space; the KL is of the models' own (latent) laws.
  /// With `comm` of several ranks, every rank builds the evaluator and calls evaluate() alike:
  /// each samples, decodes and scores its share of the endpoints, and all of them are gathered on
  /// every rank (the pool's too); the results are the one-process results.
  Evaluator(TaskPtr task, RewardPtr reward, double multiplier, VelocityFieldImpl& base,
            EvalOptions options = {}, DecoderPtr decoder = nullptr, CommunicatorPtr comm = nullptr);
  /// Samples `n` endpoints of `model` from the fixed evaluation noise (n = 0: options.samples()).
  /// With `kl`, also KL(model || base) on the first kl_samples of them (exactly 0 for the base
  /// itself).
  EvalResult evaluate(VelocityFieldImpl& model, int64_t n = 0, bool kl = false) const;
  /// The number of endpoints evaluate(model, n) takes: n, or options.samples() when n is 0 or more.
  int64_t evaluated_size(int64_t n) const {
    return n <= 0 || n > options_.samples() ? options_.samples() : n;
  }
  /// The requested conditions of the first n evaluation samples (empty for an unconditional task).
  Condition conditions(int64_t n) const { return cond_.slice(0, n); }
  /// n samples of the exact target, resampled from the weighted pool (the exact-target evaluator
  /// only).
  torch::Tensor target_samples(int64_t n, Rng& rng) const;
  /// The judge's grades of the task's test split itself (ImageJudge::data), or nullopt without a
  /// judge.
  std::optional<ImageMetrics> judge_data() const {
    return judge_ ? std::optional<ImageMetrics>(judge_->data()) : std::nullopt;
  }
  /// Whether this evaluator has the exact target (EvalOptions::target).
  bool has_target() const { return options_.target(); }
  /// The exact target; std::logic_error for the reward evaluator.
  const ExactTarget& target() const;
  const EvalOptions& options() const { return options_; }

 private:
  torch::Tensor endpoints(VelocityFieldImpl& model, const torch::Tensor& noise,
                          const Condition& cond) const;
  /// The endpoints of `noise` (n rows), decoded and scored: each rank its share, gathered.
  struct Scored {
    torch::Tensor latents, samples, reward;
    std::map<std::string, torch::Tensor> terms;
  };
  Scored scored_endpoints(VelocityFieldImpl& model, const torch::Tensor& noise,
                          const Condition& cond) const;
  /// The decoded endpoints (the endpoints themselves without a decoder).
  torch::Tensor decoded(const torch::Tensor& z) const {
    return decoder_ ? decode_samples(*decoder_, z) : z;
  }
  TaskPtr task_;
  RewardPtr reward_;
  DecoderPtr decoder_;
  VelocityFieldPtr base_;  // a frozen copy of the base model, p_ref of the KL
  EvalOptions options_;
  torch::Tensor noise_;  // [samples, ...] fixed evaluation noise, CPU
  Condition cond_;       // the task's evaluation conditions, one per sample, or empty
  ExactTarget target_;
  std::optional<ImageJudge> judge_;
  CommunicatorPtr comm_;
};

/// The exact expectation of a quadratic-form reward under a Gaussian mixture:
///   E[r] = sum_k w_k (-1/2 (tr(Q Sigma_k) + mu_k^T Q mu_k) + b^T mu_k + c).
double expected_quadratic_reward(const GaussianMixture& mixture, const QuadraticForm& f);

}  // namespace ramflow
