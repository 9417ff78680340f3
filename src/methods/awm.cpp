// Advantage Weighted Matching (see include/ramflow/awm.h for the equations and sources).
#include "ramflow/awm.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/advantage.h"
#include "ramflow/conventions.h"
#include "ramflow/elbo.h"
#include "ramflow/errors.h"

namespace ramflow {

void AWMOptions::validate() const {
  if (weighting_ != "uniform" && weighting_ != "t" && weighting_ != "ghuber")
    throw ConfigError("awm: weighting must be uniform, t or ghuber, got '" + weighting_ + "'");
  if (!(power_ > 0)) throw ConfigError("awm: power must be > 0");
  if (!(clip_ > 0)) throw ConfigError("awm: clip must be > 0");
  if (kl_ < 0 || ema_kl_ < 0) throw ConfigError("awm: kl and ema_kl must be >= 0");
  if (!(adv_clip_ > 0) || !(adv_max_ > 0))
    throw ConfigError("awm: adv_clip and adv_max must be > 0");
  if (std_scope_ != "group" && std_scope_ != "step")
    throw ConfigError("awm: std_scope must be group or step, got '" + std_scope_ + "'");
  if (draws_ < 1) throw ConfigError("awm: draws must be >= 1");
  time_.validate();
}

nlohmann::json AWMOptions::to_json() const {
  return {{"weighting", weighting_}, {"power", power_},
          {"clip", clip_},           {"kl", kl_},
          {"ema_kl", ema_kl_},       {"adv_clip", adv_clip_},
          {"adv_max", adv_max_},     {"std_scope", std_scope_},
          {"std_eps", std_eps_},     {"draws", draws_},
          {"time_dist", time_.kind}};
}

AWM::AWM(AWMOptions options) : options_(std::move(options)) { options_.validate(); }

torch::Tensor AWM::surrogate(const torch::Tensor& v, const torch::Tensor& u,
                             const torch::Tensor& t) const {
  const int64_t rows = v.size(0);
  auto mse = (v - u).reshape({rows, -1}).square().mean(1);  // [b K], in v's dtype
  if (options_.weighting() == "uniform") return -mse;
  if (options_.weighting() == "t") return -t * mse;
  const double p = options_.power(), floor = 1e-10;
  return -t * ((mse + floor).pow(p) - std::pow(floor, p)) / p;  // generalised Huber
}

void AWM::prepare(RolloutBatch& batch, const Policies& models, Rng& rng) {
  const double A_max = options_.adv_clip();
  // Over the whole step's rewards (a process of a data-parallel step holds some rows of it).
  batch.extras["advantage"] =
      batch.own(clipped_advantage(batch.step_rewards(), batch.group_size, options_.std_scope(),
                                  options_.std_eps(), A_max)) *
      (options_.adv_max() / A_max);  // [B]
  // Weight 1, t from the time distribution (t_min is not used by the "uniform" weighting).
  const auto d = draw_elbo_points(batch.x0, options_.draws(), "uniform", /*t_min=*/0.5,
                                  options_.time(), rng, batch.rows);
  batch.extras["awm_t"] = d.t;      // [B, K]
  batch.extras["awm_eps"] = d.eps;  // [B, K, ...]
  torch::NoGradGuard no_grad;       // l_old is a constant of the loss
  const auto p = elbo_points(batch.x0, batch.cond, d);
  batch.extras["awm_old"] = surrogate(models.policy.forward(p.x_t, p.t, p.cond), p.u, p.t)
                                .view({batch.size(), -1});  // [B, K]
}

LossOutput AWM::loss(const RolloutBatch& batch, const Policies& models, Rng&) {
  const auto& ex = batch.extras;
  TORCH_CHECK(ex.count("advantage") && ex.count("awm_t") && ex.count("awm_old"),
              "awm: prepare() was not called on the batch");
  TORCH_CHECK(!uses_old_policy() || models.old != nullptr, "awm: ema_kl > 0 needs the EMA policy");
  const int64_t K = options_.draws();
  const auto& t = ex.at("awm_t");
  const auto p =
      elbo_points(batch.x0, batch.cond, ElboDraws{t, ex.at("awm_eps"), torch::ones_like(t)});
  auto v = models.policy.forward(p.x_t, p.t, p.cond);  // [b K, ...], the only graph
  auto l = surrogate(v, p.u, p.t);                     // [b K]
  auto ratio = torch::exp(l - ex.at("awm_old").reshape({-1}));
  auto A = repeat_rows(ex.at("advantage").to(l.options()), K);  // [b K]
  const double c = options_.clip();
  LossOutput out;
  out.loss = clipped_surrogate(ratio, A, c).mean();
  torch::Tensor v_ref, v_ema, kl, ema_kl;
  {
    torch::NoGradGuard no_grad;
    if (options_.kl() > 0) v_ref = models.ref.forward(p.x_t, p.t, p.cond);
    if (uses_old_policy()) v_ema = models.old->forward(p.x_t, p.t, p.cond);
  }
  if (v_ref.defined()) kl = (v - v_ref).square().mean();
  if (v_ema.defined()) ema_kl = (v - v_ema).square().mean();
  if (kl.defined()) out.loss = out.loss + options_.kl() * kl;
  if (ema_kl.defined()) out.loss = out.loss + options_.ema_kl() * ema_kl;
  {
    torch::NoGradGuard no_grad;
    out.metrics["surrogate_mean"] = l.mean().item<double>();
    out.metrics["ratio_mean"] = ratio.mean().item<double>();
    // policy and old (prepare), ref, EMA: per draw
    out.metrics["nfe_train"] =
        static_cast<double>(K * (2 + (kl.defined() ? 1 : 0) + (ema_kl.defined() ? 1 : 0)));
    if (kl.defined()) out.metrics["kl_ref"] = kl.item<double>();
    if (ema_kl.defined()) out.metrics["kl_ema"] = ema_kl.item<double>();
  }
  return out;
}

void AWM::add_params(ParamTable& t) {
  t.group("AWM (method awm; uses --draws and the time_* keys)");
  t.text("awm_weighting", "ghuber",
         "surrogate: uniform = -mse, t = -t mse, ghuber = -t (mse^p - 0) / p",
         {"uniform", "t", "ghuber"});
  t.number("awm_power", 0.25, "p of the ghuber weighting", 0, 10, true);
  t.number("awm_clip", 1.0, "clip range of the per-draw ratio (1 = released, on-policy)", 0, 100,
           true);
  t.number("awm_kl", 0.003, "beta: weight of mean |v - v_ref|^2", 0, 1e6);
  t.number("awm_ema_kl", 1.0, "ema_beta: weight of mean |v - v_ema|^2 (EMA: old_decay, old_ramp)",
           0, 1e6);
  t.number("awm_adv_clip", 5.0, "A_max: advantages are clamped to +-A_max, then divided by it", 0,
           1e6, true);
  t.number("awm_adv_max", 1.0, "advantages end in [-adv_max, adv_max]", 0, 1e6, true);
  t.text("awm_std_scope", "step", "advantage std over the step (global std) or per group",
         {"group", "step"});
}

MethodPtr AWM::from_config(const Config& cfg) {
  return std::make_unique<AWM>(AWMOptions()
                                   .weighting(cfg.text("awm_weighting"))
                                   .power(cfg.number("awm_power"))
                                   .clip(cfg.number("awm_clip"))
                                   .kl(cfg.number("awm_kl"))
                                   .ema_kl(cfg.number("awm_ema_kl"))
                                   .adv_clip(cfg.number("awm_adv_clip"))
                                   .adv_max(cfg.number("awm_adv_max"))
                                   .std_scope(cfg.text("awm_std_scope"))
                                   .draws(cfg.integer("draws"))
                                   .time(time_distribution_from(cfg)));
}

}  // namespace ramflow
