// Evaluation against the exact target (see include/ramflow/evaluator.h).
#include "ramflow/evaluator.h"

#include <set>
#include <stdexcept>

#include <torch/torch.h>

#include "ramflow/assets.h"
#include "ramflow/errors.h"
#include "ramflow/guidance.h"
#include "ramflow/metrics.h"
#include "ramflow/strings.h"
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

namespace {

// The pool's index sets: one per condition id of a conditional pool (in increasing id), else one
// holding everything.
std::vector<torch::Tensor> groups_of(const Condition& cond, int64_t n) {
  if (!cond.defined()) return {torch::arange(n)};
  const auto id = cond.id().to(torch::kCPU).contiguous();
  const int64_t* p = id.data_ptr<int64_t>();
  const std::set<int64_t> ids(p, p + id.numel());
  std::vector<torch::Tensor> out;
  for (int64_t k : ids) out.push_back((id == k).nonzero().flatten());
  return out;
}

}  // namespace

std::vector<FrontierPoint> ExactTarget::frontier(const std::vector<double>& multipliers) const {
  // Self-normalised weights w_i ∝ exp(m r_i) on the pool of base samples, within each condition c:
  //   E_m[r | c] = sum_i w_i r_i,   KL_c = m E_m[r | c] - log Z_c,   Z_c = mean_{i in c} exp(m r_i)
  // (log-sum-exp for stability); reward and KL average over the conditions with their pool shares.
  const auto r = rewards.to(torch::kDouble);
  const double n = static_cast<double>(r.size(0));
  const auto groups = groups_of(pool_cond, r.size(0));
  std::vector<FrontierPoint> out;
  for (double m : multipliers) {
    FrontierPoint p;
    p.multiplier = m;
    auto w_all = torch::zeros_like(r);
    for (const auto& idx : groups) {
      const double share = static_cast<double>(idx.size(0)) / n;
      auto rk = r.index_select(0, idx);
      auto logits = m * rk;
      const double log_z =
          (torch::logsumexp(logits, 0) - std::log(static_cast<double>(idx.size(0)))).item<double>();
      auto w = torch::softmax(logits, 0);
      const double reward_k = torch::dot(w, rk).item<double>();
      p.reward += share * reward_k;
      p.kl += share * (m * reward_k - log_z);
      w_all.index_copy_(0, idx, share * w);
    }
    p.ess = 1.0 / w_all.square().sum().item<double>();
    out.push_back(p);
  }
  return out;
}

double expected_quadratic_reward(const GaussianMixture& g, const QuadraticForm& f) {
  auto Q = f.Q.to(torch::kDouble), b = f.b.to(torch::kDouble);
  auto trace = torch::matmul(Q.unsqueeze(0), g.covs).diagonal(0, -2, -1).sum(-1);  // [M]
  auto quad = (g.means * torch::matmul(g.means, Q)).sum(-1);                       // [M]
  auto per_mode = -0.5 * (trace + quad) + torch::mv(g.means, b) + f.c;             // [M]
  return torch::dot(g.weights, per_mode).item<double>();
}

Evaluator::Evaluator(TaskPtr task, RewardPtr reward, double multiplier, VelocityFieldImpl& base,
                     EvalOptions options, DecoderPtr decoder, CommunicatorPtr comm)
    : task_(std::move(task)),
      reward_(std::move(reward)),
      decoder_(std::move(decoder)),
      base_(frozen_copy(base)),
      options_(std::move(options)),
      comm_(comm ? std::move(comm) : single_process()) {
  TORCH_CHECK(options_.samples() >= 2 && (!options_.target() || options_.pool() >= 2),
              "Evaluator: samples and pool must be >= 2");
  std::vector<int64_t> shape = {options_.samples()};
  for (auto s : task_->sample_shape()) shape.push_back(s);
  Rng rng(options_.seed());
  noise_ = rng.randn(shape);
  cond_ = task_->evaluation_conditions(options_.samples());  // the held-out conditions, in turn
  if (!options_.judge().empty()) {
    auto test = task_->test_split();
    if (!test || task_->sample_shape().size() != 3)
      throw ConfigError("an evaluation judge needs an image task with a test split; task '" +
                        task_->name() + "' is not one");
    auto grader = load_grader(resolve_model_file(options_.judge()));
    if (grader->num_classes() > 0 && task_->num_classes() == 0)
      throw ConfigError("an evaluation classifier needs a labelled image task; task '" +
                        task_->name() + "' is not");
    // The judge reads the task's images (its test split's, as the samples are decoded to).
    const auto shape = test->x.sizes().slice(1).vec();
    if (grader->image_shape() != shape)
      throw ConfigError("--eval-classifier: '" + options_.judge() + "' reads " +
                        shape_text(grader->image_shape()) + " images; task '" + task_->name() +
                        "' makes " + shape_text(shape));
    judge_.emplace(std::move(grader), *test);
  }
  const GaussianMixture* mixture =
      decoder_ ? nullptr : task_->mixture();  // the mixture is of latents
  if (mixture) target_.mode_centers = mixture->means.to(torch::kFloat);
  if (!options_.target()) return;

  shape[0] = options_.pool();
  const Condition pool_cond = task_->evaluation_conditions(options_.pool());
  Scored scored = scored_endpoints(base, rng.fork(1).randn(shape), pool_cond);
  const auto& pool = scored.samples;
  target_.multiplier = multiplier;
  target_.rewards = scored.reward;
  target_.pool = pool.reshape({pool.size(0), -1});  // [N, D]
  target_.pool_cond = pool_cond;
  const auto point = target_.frontier({multiplier}).front();
  {
    // The weights themselves (frontier() keeps only their summaries): softmax(m r) within each
    // class, times the class's share of the pool.
    auto r = target_.rewards.to(torch::kDouble);
    target_.weights = torch::zeros_like(r);
    for (const auto& idx : groups_of(pool_cond, r.size(0)))
      target_.weights.index_copy_(
          0, idx,
          torch::softmax(multiplier * r.index_select(0, idx), 0) *
              (static_cast<double>(idx.size(0)) / static_cast<double>(r.size(0))));
  }
  target_.ess = point.ess;
  auto r64 = target_.rewards.to(torch::kDouble);
  target_.reward_base = r64.mean().item<double>();
  target_.reward_optimal = torch::dot(target_.weights, r64).item<double>();
  target_.pair_distance = mean_pair_distance(target_.pool, target_.weights);
  target_.kl_optimal = point.kl;
  if (const GaussianMixture* g = mixture) {
    target_.mode_masses = mode_masses(target_.pool, target_.mode_centers, target_.weights);
    if (auto f = reward_->quadratic_form()) {
      target_.closed_form = tilt_mixture(*g, *f, multiplier);
      target_.reward_optimal_closed_form = expected_quadratic_reward(*target_.closed_form, *f);
    }
  }
}

torch::Tensor Evaluator::endpoints(VelocityFieldImpl& model, const torch::Tensor& noise,
                                   const Condition& cond) const {
  auto opts = device_of(model).options();
  // The evaluation sampler, guided when cfg != 1 (the same for the pool and for every model).
  GuidedVelocityImpl guided_model(model, options_.cfg(), task_->null_condition());
  VelocityFieldImpl& sampler_model = cond.defined() && options_.cfg() != 1.0 ? guided_model : model;
  const int64_t chunk = noise.dim() > 2 ? 500 : kSampleChunk;  // images: smaller batches
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < noise.size(0); i += chunk) {
    const int64_t n = std::min(chunk, noise.size(0) - i);
    auto x1 = noise.narrow(0, i, n).to(opts.device());
    auto c = cond.slice(i, i + n).to(opts.device());
    parts.push_back(sample(sampler_model, x1, c, options_.sampler()).x0.to(torch::kCPU));
  }
  return torch::cat(parts, 0);
}

Evaluator::Scored Evaluator::scored_endpoints(VelocityFieldImpl& model, const torch::Tensor& noise,
                                              const Condition& cond) const {
  const int64_t n = noise.size(0);
  const auto [lo, hi] = share_of(n, comm_->rank(), comm_->size());
  const Condition c = cond.slice(lo, hi);
  Scored out;
  out.latents = endpoints(model, noise.narrow(0, lo, hi - lo), c);
  out.samples = decoded(out.latents);
  ScoredBatch scored = score_terms_checked(*reward_, out.samples, c);
  out.reward = scored.total.to(torch::kCPU);
  out.terms = std::move(scored.terms);
  if (comm_->size() > 1) {  // the shares, in order, on every rank
    out.latents = all_gather_shares(*comm_, out.latents, n);
    // Without a decoder the samples are the latents: gathered once.
    out.samples = decoder_ ? all_gather_shares(*comm_, out.samples, n) : out.latents;
    out.reward = all_gather_shares(*comm_, out.reward, n);
    for (auto& [name, t] : out.terms) t = all_gather_shares(*comm_, t.to(torch::kCPU), n);
  }
  return out;
}

EvalResult Evaluator::evaluate(VelocityFieldImpl& model, int64_t n, bool kl) const {
  n = evaluated_size(n);
  EvalResult out;
  out.n = n;
  out.cond = conditions(n);
  Scored scored = scored_endpoints(model, noise_.narrow(0, 0, n), out.cond);
  out.latents = scored.latents;
  out.samples = scored.samples;
  auto r = scored.reward.to(torch::kDouble);
  for (const auto& [name, t] : scored.terms)
    out.reward_terms[name] = t.to(torch::kDouble).mean().item<double>();
  out.reward_mean = r.mean().item<double>();
  out.reward_std = r.std().item<double>();
  const auto flat = out.samples.reshape({n, -1});  // [n, D]
  out.diversity = mean_pair_distance(flat);
  if (has_target()) out.distance = target_.distance(flat, out.diversity);
  if (target_.mode_centers.defined())
    out.mode_masses = mode_masses(out.samples, target_.mode_centers);
  if (judge_) {
    out.image = judge_->measure(out.samples, out.cond);
    out.diversity = out.image->diversity;  // images: within-condition, in the judge's features
  }
  if (kl) {
    // On the model's device; Hutchinson's probes (high dimensions only) from a fixed stream.
    // Each rank its share of the k samples (with the whole set's probes), gathered.
    const int64_t k = std::min(n, options_.kl_samples());
    const auto [lo, hi] = share_of(k, comm_->rank(), comm_->size());
    auto x = out.latents.narrow(0, lo, hi - lo).to(device_of(model).device());
    Rng rng(options_.seed() + 3);
    auto c = out.cond.slice(lo, hi).to(x.device());
    const Rows rows = comm_->size() > 1 ? Rows::range(lo, hi, k) : Rows();
    auto terms = hi > lo
                     ? log_ratio_on_samples(model, *base_, x, c, options_.likelihood(), &rng, rows)
                           .to(torch::kCPU)
                     : torch::zeros({0}, torch::kDouble);  // a share of no samples
    if (comm_->size() > 1) terms = all_gather_shares(*comm_, terms, k);
    const KLEstimate est = KLEstimate::of(terms);
    out.kl_to_base = est.kl;
    out.kl_to_base_se = est.se;
  }
  return out;
}

const ExactTarget& Evaluator::target() const {
  if (!has_target())
    throw std::logic_error("Evaluator::target: the reward evaluator has no exact target");
  return target_;
}

torch::Tensor Evaluator::target_samples(int64_t n, Rng& rng) const {
  (void)target();  // the exact-target evaluator only
  std::vector<int64_t> shape = {n};
  for (auto s : decoder_ ? decoder_->decoded_shape(task_->sample_shape()) : task_->sample_shape())
    shape.push_back(s);
  return target_.pool.index_select(0, rng.multinomial(target_.weights, n)).reshape(shape);
}

}  // namespace ramflow
