// The ELBO policy gradient (see include/ramflow/elbo_pg.h for the equations and what is
// reconstructed).
#include "ramflow/elbo_pg.h"

#include <torch/torch.h>

#include "ramflow/advantage.h"
#include "ramflow/elbo.h"
#include "ramflow/errors.h"

namespace ramflow {

void ElboPGOptions::validate() const {
  if (form_ != "epg" && form_ != "pepg")
    throw ConfigError("elbo-pg: form must be epg or pepg, got '" + form_ + "'");
  if (weighting_ != "elbo" && weighting_ != "uniform")
    throw ConfigError("elbo-pg: weighting must be elbo or uniform, got '" + weighting_ + "'");
  if (!(t_min_ > 0 && t_min_ < 1)) throw ConfigError("elbo-pg: t_min must be in (0, 1)");
  if (!(clip_ > 0)) throw ConfigError("elbo-pg: clip must be > 0");
  if (kl_ < 0) throw ConfigError("elbo-pg: kl must be >= 0");
  if (!(adv_clip_ > 0)) throw ConfigError("elbo-pg: adv_clip must be > 0");
  if (std_scope_ != "group" && std_scope_ != "step")
    throw ConfigError("elbo-pg: std_scope must be group or step, got '" + std_scope_ + "'");
  if (draws_ < 1) throw ConfigError("elbo-pg: draws must be >= 1");
  time_.validate();
}

nlohmann::json ElboPGOptions::to_json() const {
  return {{"form", form_},
          {"weighting", weighting_},
          {"t_min", t_min_},
          {"clip", clip_},
          {"kl", kl_},
          {"adv_clip", adv_clip_},
          {"std_scope", std_scope_},
          {"std_eps", std_eps_},
          {"draws", draws_},
          {"time_dist", time_.kind}};
}

ElboPG::ElboPG(ElboPGOptions options) : options_(std::move(options)) { options_.validate(); }

void ElboPG::prepare(RolloutBatch& batch, const Policies& models, Rng& rng) {
  const double A_max = options_.adv_clip();
  batch.extras["advantage"] = batch.own(clipped_advantage(batch.step_rewards(), batch.group_size,
                                                          options_.std_scope(), options_.std_eps(),
                                                          A_max));  // [B]
  // One set of (t, eps) draws per rollout, shared by every minibatch and by the old policy.
  const auto d = draw_elbo_points(batch.x0, options_.draws(), options_.weighting(),
                                  options_.t_min(), options_.time(), rng, batch.rows);
  batch.extras["elbo_t"] = d.t;            // [B, K]
  batch.extras["elbo_eps"] = d.eps;        // [B, K, ...]
  batch.extras["elbo_weight"] = d.weight;  // [B, K]
  if (options_.form() == "pepg") {
    // ELBO_old: the rollout policy, before this rollout's updates (prepare runs first); a constant.
    torch::NoGradGuard no_grad;
    const auto p = elbo_points(batch.x0, batch.cond, d);
    batch.extras["elbo_old"] =
        elbo_from_velocity(models.policy.forward(p.x_t, p.t, p.cond), p, options_.draws());  // [B]
  }
}

LossOutput ElboPG::loss(const RolloutBatch& batch, const Policies& models, Rng&) {
  const auto& ex = batch.extras;
  TORCH_CHECK(ex.count("advantage") && ex.count("elbo_t"),
              "elbo-pg: prepare() was not called on the batch");
  const int64_t K = options_.draws();
  const ElboDraws d{ex.at("elbo_t"), ex.at("elbo_eps"), ex.at("elbo_weight")};
  const auto p = elbo_points(batch.x0, batch.cond, d);   // [b K, ...]
  auto v = models.policy.forward(p.x_t, p.t, p.cond);    // the only graph
  auto elbo = elbo_from_velocity(v, p, K);               // [b]
  const auto A = ex.at("advantage").to(elbo.options());  // [b]

  LossOutput out;
  torch::Tensor ratio;
  if (options_.form() == "epg") {
    out.loss = -(A * elbo).mean();  // grad = -A grad ELBO
  } else {
    TORCH_CHECK(ex.count("elbo_old"), "elbo-pg: PEPG needs ELBO_old from prepare()");
    ratio = torch::exp(elbo - ex.at("elbo_old"));
    out.loss = clipped_surrogate(ratio, A, options_.clip()).mean();
  }
  torch::Tensor kl;
  if (options_.kl() > 0) {
    torch::Tensor v_ref;
    {
      torch::NoGradGuard no_grad;
      v_ref = models.ref.forward(p.x_t, p.t, p.cond);
    }
    kl = (v - v_ref).square().mean();
    out.loss = out.loss + options_.kl() * kl;
  }
  {
    torch::NoGradGuard no_grad;
    out.metrics["elbo_mean"] = elbo.mean().item<double>();
    // policy (, old in prepare for PEPG) (, ref) per draw
    out.metrics["nfe_train"] =
        static_cast<double>(K * (1 + (options_.form() == "pepg" ? 1 : 0) + (kl.defined() ? 1 : 0)));
    if (kl.defined()) out.metrics["kl_ref"] = kl.item<double>();
    if (ratio.defined()) {
      const auto dev = (ratio - 1.0).abs();
      out.metrics["ratio_mean"] = ratio.mean().item<double>();
      out.metrics["clip_fraction"] =
          (dev > options_.clip()).to(torch::kFloat).mean().item<double>();
    }
  }
  return out;
}

void ElboPG::add_params(ParamTable& t) {
  t.group(
      "ELBO policy gradient (method elbo-pg; uses --draws and, with --elbo-weighting uniform, the "
      "time_* keys)");
  t.text("elbo_form", "epg",
         "epg = REINFORCE on the ELBO; pepg = clipped ratio exp(ELBO - ELBO_old)", {"epg", "pepg"});
  t.text("elbo_weighting", "uniform",
         "elbo = the true ELBO weight (1 - t)/t on [t_min, 1]; uniform = plain FM loss (default: "
         "the true "
         "weight diverged on the ring, docs/tuning.md)",
         {"elbo", "uniform"});
  t.number("elbo_t_min", 1e-3, "lower end delta of the true ELBO weight's time range", 0, 0.5,
           true);
  t.number("elbo_clip", 0.2, "PEPG: clip range of the ratio", 0, 100, true);
  t.number("elbo_kl", 2.0,
           "beta_KL: weight of mean |v - v_ref|^2 (1 diverged on some seeds, docs/tuning.md)", 0,
           1e6);
  t.number("elbo_adv_clip", 5.0, "advantages are clamped to +-A_max", 0, 1e6, true);
  t.text("elbo_std_scope", "step", "advantage std over the step (global std) or per group",
         {"group", "step"});
}

MethodPtr ElboPG::from_config(const Config& cfg) {
  return std::make_unique<ElboPG>(ElboPGOptions()
                                      .form(cfg.text("elbo_form"))
                                      .weighting(cfg.text("elbo_weighting"))
                                      .t_min(cfg.number("elbo_t_min"))
                                      .clip(cfg.number("elbo_clip"))
                                      .kl(cfg.number("elbo_kl"))
                                      .adv_clip(cfg.number("elbo_adv_clip"))
                                      .std_scope(cfg.text("elbo_std_scope"))
                                      .draws(cfg.integer("draws"))
                                      .time(time_distribution_from(cfg)));
}

}  // namespace ramflow
