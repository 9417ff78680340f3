// Efficient Adjoint Matching, reconstructed (see include/ramflow/eam.h for the derivation).
#include "ramflow/eam.h"

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/conventions.h"
#include "ramflow/errors.h"
#include "ramflow/renoise.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

void EAMOptions::validate() const {
  if (multiplier_ < 0) throw ConfigError("eam: multiplier must be >= 0");
  if (!(c_ > 0.5)) throw ConfigError("eam: c must be > 1/2 (the reference variance is 2c - 1)");
  if (score_ != "model" && score_ != "none")
    throw ConfigError("eam: score must be model or none, got '" + score_ + "'");
  if (!(score_time_ > 0 && score_time_ < 1)) throw ConfigError("eam: score_time must be in (0, 1)");
  if (draws_ < 1) throw ConfigError("eam: draws must be >= 1");
  time_.validate();
}

nlohmann::json EAMOptions::to_json() const {
  return {{"multiplier", multiplier_}, {"c", c_},
          {"score", score_},           {"score_time", score_time_},
          {"draws", draws_},           {"time_dist", time_.kind},
          {"time_alpha", time_.alpha}, {"time_mean", time_.mean},
          {"time_std", time_.std}};
}

// q(t) = t^2 + (1 - t)^2 s^2: the reference's marginal variance at time t.
static torch::Tensor reference_variance(const torch::Tensor& t, double s2) {
  return t * t + (1.0 - t).square() * s2;
}

torch::Tensor linear_reference_velocity(const torch::Tensor& x, const torch::Tensor& t, double s2) {
  // v_lin = (x - E[x0 | x_t]) / t with E[x0 | x_t] = (1 - t) s^2 x / q: (t - (1 - t) s^2) x / q.
  auto coef = (t - (1.0 - t) * s2) / reference_variance(t, s2);  // [B]
  return expand_time(coef, x) * x;
}

torch::Tensor eam_gain(const torch::Tensor& t, double s2) {
  return t * s2 / reference_variance(t, s2);  // eta rho = (t / (1 - t)) * s^2 (1 - t) / q
}

EAM::EAM(EAMOptions options) : options_(std::move(options)) { options_.validate(); }

RolloutSpec EAM::rollout_spec() const {
  RolloutSpec spec;  // ODE endpoints from the configured sampler, as RAM
  spec.reward_gradient = true;
  return spec;
}

void EAM::prepare(RolloutBatch& batch, const Policies& models, Rng&) {
  TORCH_CHECK(batch.reward_grad.defined() && batch.reward_grad.sizes() == batch.x0.sizes(),
              "eam: the batch needs grad r at x0, shaped like x0 ", batch.x0.sizes());
  auto G = options_.multiplier() * batch.reward_grad;  // [B, ...]
  if (options_.score() == "model") {
    // grad log p_base(x0) ≈ (1 - delta) grad log p_delta(y), y = (1 - delta) x0, with the
    // flow-matching score grad log p_t(y) = -(y + (1 - t) v_ref(y, t)) / t.
    const double d = options_.score_time();
    const int64_t B = batch.x0.size(0);
    auto y = (1.0 - d) * batch.x0;
    auto v_ref = models.ref.forward(y, torch::full({B}, d, y.options()), batch.cond);
    auto score = -(1.0 - d) / d * (y + (1.0 - d) * v_ref);
    G = G + score + batch.x0 / options_.ref_var();
  }
  batch.extras["terminal"] = G;
}

LossOutput EAM::loss(const RolloutBatch& batch, const Policies& models, Rng& rng) {
  const int64_t K = options_.draws();
  const auto it = batch.extras.find("terminal");
  TORCH_CHECK(it != batch.extras.end() && it->second.sizes() == batch.x0.sizes(),
              "eam: prepare() must run on the batch first (extras[\"terminal\"] shaped like x0 ",
              batch.x0.sizes(), ")");
  const auto opts = batch.x0.options();
  const bool first_order = options_.score() == "none";
  const double s2 = options_.ref_var();

  // K draws per endpoint: x_t = (1 - t) x0 + t eps, the reference bridge from x0.
  const Renoised p = renoise(batch.x0, batch.cond, K, options_.time(), rng, batch.rows);  // [B*K]
  const auto &x_t = p.x_t, &t = p.t;
  const Condition& cond = p.cond;
  auto G = repeat_rows(it->second.to(opts), K);  // [B*K, ...]

  torch::Tensor target;
  {
    torch::NoGradGuard no_grad;
    // target = v_lin - (t s^2 / q) G   (or v_ref - (t s^2 / q) m grad r, first order)
    auto base =
        first_order ? models.ref.forward(x_t, t, cond) : linear_reference_velocity(x_t, t, s2);
    target = base - expand_time(eam_gain(t, s2), G) * G;
  }
  auto v = models.policy.forward(x_t, t, cond);
  auto loss = torch::mse_loss(v, target);

  LossOutput out;
  out.loss = loss;
  {
    torch::NoGradGuard no_grad;
    // per endpoint: K policy passes, K reference passes (first order) or one score pass (model)
    out.metrics["nfe_train"] = static_cast<double>(first_order ? 2 * K : K + 1);
    out.metrics["terminal_norm"] = it->second.flatten(1).norm(2, 1).mean().item<double>();
  }
  return out;
}

void EAM::add_params(ParamTable& t) {
  t.group(
      "Efficient Adjoint Matching, reconstructed (method eam; needs a differentiable reward; uses "
      "--multiplier, --draws and the time_* keys)");
  t.number("eam_c", 100.0, "C: the linear reference's data law is N(0, (2C - 1) I)", 0.5, 1e6,
           true);
  t.text("eam_score", "none",
         "base score in the terminal cost: none = first-order form with the base velocity, model = "
         "read "
         "from the base at eam_score_time (exact fixed point, needs an accurate base score)",
         {"none", "model"});
  t.number("eam_score_time", 0.1, "delta: the time where the base score is read", 0, 1, true);
}

MethodPtr EAM::from_config(const Config& cfg) {
  return std::make_unique<EAM>(EAMOptions()
                                   .multiplier(cfg.number("multiplier"))
                                   .c(cfg.number("eam_c"))
                                   .score(cfg.text("eam_score"))
                                   .score_time(cfg.number("eam_score_time"))
                                   .draws(cfg.integer("draws"))
                                   .time(time_distribution_from(cfg)));
}

}  // namespace ramflow
