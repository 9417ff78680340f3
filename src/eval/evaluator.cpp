// Evaluation against the exact target (see include/ramflow/evaluator.h).
#include "ramflow/evaluator.h"

#include <torch/torch.h>

#include "ramflow/metrics.h"
#include "ramflow/tilt.h"

namespace ramflow {
namespace {

constexpr int64_t kSampleChunk = 8192;  // endpoints integrated per batch

torch::Tensor device_of(VelocityFieldImpl& model) {
  auto p = model.parameters();
  auto b = model.buffers();
  if (!p.empty()) return p.front();
  if (!b.empty()) return b.front();
  return torch::zeros({1});
}

}  // namespace

double ExactTarget::distance(const torch::Tensor& x, std::optional<double> x_pair) const {
  const double self = x_pair ? *x_pair : mean_pair_distance(x);
  return 2.0 * mean_cross_distance(x, pool, weights) - self - pair_distance;
}

std::vector<FrontierPoint> ExactTarget::frontier(const std::vector<double>& multipliers) const {
  // Self-normalised weights w_i ∝ exp(m r_i) on the pool of base samples:
  //   E_m[r] = sum_i w_i r_i,   KL(p_m || p_ref) = m E_m[r] - log Z_m,   Z_m = mean_i exp(m r_i)
  // (log-sum-exp for stability).
  const auto r = rewards.to(torch::kDouble);
  const double n = static_cast<double>(r.size(0));
  std::vector<FrontierPoint> out;
  for (double m : multipliers) {
    auto logits = m * r;
    const double log_z = (torch::logsumexp(logits, 0) - std::log(n)).item<double>();
    auto w = torch::softmax(logits, 0);
    FrontierPoint p;
    p.multiplier = m;
    p.reward = torch::dot(w, r).item<double>();
    p.kl = m * p.reward - log_z;
    p.ess = 1.0 / w.square().sum().item<double>();
    out.push_back(p);
  }
  return out;
}

double expected_quadratic_reward(const GaussianMixture& g, const QuadraticForm& f) {
  auto Q = f.Q.to(torch::kDouble), b = f.b.to(torch::kDouble);
  auto trace = torch::matmul(Q.unsqueeze(0), g.covs).diagonal(0, -2, -1).sum(-1);        // [M]
  auto quad = (g.means * torch::matmul(g.means, Q)).sum(-1);                             // [M]
  auto per_mode = -0.5 * (trace + quad) + torch::mv(g.means, b) + f.c;                   // [M]
  return torch::dot(g.weights, per_mode).item<double>();
}

Evaluator::Evaluator(TaskPtr task, RewardPtr reward, double multiplier, VelocityFieldImpl& base,
                     EvalOptions options)
    : task_(std::move(task)), reward_(std::move(reward)), base_(frozen_copy(base)), options_(std::move(options)) {
  TORCH_CHECK(options_.samples() >= 2 && options_.pool() >= 2,
              "Evaluator: samples and pool must be >= 2");
  std::vector<int64_t> shape = {options_.samples()};
  for (auto s : task_->sample_shape()) shape.push_back(s);
  Rng rng(options_.seed());
  noise_ = rng.randn(shape);
  shape[0] = options_.pool();
  auto pool = endpoints(base, rng.fork(1).randn(shape));

  target_.multiplier = multiplier;
  target_.rewards = score_checked(*reward_, pool);
  auto tilted = importance_tilt(pool, target_.rewards, multiplier);
  target_.pool = tilted.x;
  target_.weights = tilted.w;
  target_.ess = tilted.ess;
  auto r64 = target_.rewards.to(torch::kDouble);
  target_.reward_base = r64.mean().item<double>();
  target_.reward_optimal = torch::dot(target_.weights, r64).item<double>();
  target_.pair_distance = mean_pair_distance(target_.pool, target_.weights);
  target_.kl_optimal = target_.frontier({multiplier}).front().kl;
  if (const GaussianMixture* g = task_->mixture()) {
    target_.mode_centers = g->means.to(torch::kFloat);
    target_.mode_masses = mode_masses(target_.pool, target_.mode_centers, target_.weights);
    if (auto f = reward_->quadratic_form()) {
      target_.closed_form = tilt_mixture(*g, *f, multiplier);
      target_.reward_optimal_closed_form = expected_quadratic_reward(*target_.closed_form, *f);
    }
  }
}

torch::Tensor Evaluator::endpoints(VelocityFieldImpl& model, const torch::Tensor& noise) const {
  auto opts = device_of(model).options();
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < noise.size(0); i += kSampleChunk) {
    const int64_t n = std::min(kSampleChunk, noise.size(0) - i);
    auto x1 = noise.narrow(0, i, n).to(opts.device());
    parts.push_back(sample(model, x1, {}, options_.sampler()).x0.to(torch::kCPU));
  }
  return torch::cat(parts, 0);
}

EvalResult Evaluator::evaluate(VelocityFieldImpl& model, int64_t n, bool kl) const {
  if (n <= 0 || n > options_.samples()) n = options_.samples();
  EvalResult out;
  out.n = n;
  out.samples = endpoints(model, noise_.narrow(0, 0, n));
  auto r = score_checked(*reward_, out.samples).to(torch::kDouble);
  out.reward_mean = r.mean().item<double>();
  out.reward_std = r.std().item<double>();
  out.diversity = mean_pair_distance(out.samples);
  out.distance = target_.distance(out.samples, out.diversity);
  if (target_.mode_centers.defined())
    out.mode_masses = mode_masses(out.samples, target_.mode_centers);
  if (kl) {
    // On the model's device; Hutchinson's probes (high dimensions only) from a fixed stream.
    const int64_t k = std::min(n, options_.kl_samples());
    auto x = out.samples.narrow(0, 0, k).to(device_of(model).device());
    Rng rng(options_.seed() + 3);
    const auto est = kl_on_samples(model, *base_, x, {}, options_.likelihood(), &rng);
    out.kl_to_base = est.kl;
    out.kl_to_base_se = est.se;
  }
  return out;
}

torch::Tensor Evaluator::target_samples(int64_t n, Rng& rng) const {
  return target_.pool.index_select(0, rng.multinomial(target_.weights, n));
}

}  // namespace ramflow
