// Flow-GRPO (see include/ramflow/flow_grpo.h for the equations and sources).
#include "ramflow/flow_grpo.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/advantage.h"
#include "ramflow/conventions.h"
#include "ramflow/errors.h"
#include "ramflow/path_rows.h"
#include "ramflow/sde.h"

namespace ramflow {

void FlowGRPOOptions::validate() const {
  if (!(noise_level_ > 0)) throw ConfigError("flow-grpo: noise_level must be > 0");
  if (!(clip_range_ > 0)) throw ConfigError("flow-grpo: clip_range must be > 0");
  if (kl_ < 0) throw ConfigError("flow-grpo: kl must be >= 0");
  if (kl_form_ != "exact" && kl_form_ != "code")
    throw ConfigError("flow-grpo: kl_form must be exact or code, got '" + kl_form_ + "'");
  if (!(adv_clip_ > 0)) throw ConfigError("flow-grpo: adv_clip must be > 0");
  if (std_scope_ != "group" && std_scope_ != "step")
    throw ConfigError("flow-grpo: std_scope must be group or step, got '" + std_scope_ + "'");
  if (log_prob_ != "mean" && log_prob_ != "sum")
    throw ConfigError("flow-grpo: log_prob must be mean or sum, got '" + log_prob_ + "'");
  if (!(train_fraction_ > 0 && train_fraction_ <= 1))
    throw ConfigError("flow-grpo: train_fraction must be in (0, 1]");
  if (window_ < 0) throw ConfigError("flow-grpo: window must be >= 0");
  if (!(window_end_ > 0 && window_end_ <= 1))
    throw ConfigError("flow-grpo: window_end must be in (0, 1]");
}

nlohmann::json FlowGRPOOptions::to_json() const {
  return {{"noise_level", noise_level_},
          {"clip_range", clip_range_},
          {"kl", kl_},
          {"kl_form", kl_form_},
          {"adv_clip", adv_clip_},
          {"drop_zero_adv", drop_zero_adv_},
          {"std_scope", std_scope_},
          {"std_eps", std_eps_},
          {"log_prob", log_prob_},
          {"train_fraction", train_fraction_},
          {"window", window_},
          {"window_end", window_end_}};
}

FlowGRPO::FlowGRPO(FlowGRPOOptions options) : options_(std::move(options)) { options_.validate(); }

RolloutSpec FlowGRPO::rollout_spec() const {
  RolloutSpec spec;
  spec.noise_level = options_.noise_level();
  spec.window = options_.window();
  spec.window_end = options_.window_end();
  spec.log_prob_reduce = options_.log_prob();
  spec.trajectory = true;
  spec.guided_loss = true;
  return spec;
}

std::vector<int64_t> FlowGRPO::trained_steps(const std::vector<int64_t>& sde_steps,
                                             int64_t N) const {
  if (options_.window() > 0) return sde_steps;  // the Fast variant trains its whole window
  // The released code trains steps 0 .. floor(N fraction) - 1 (at least one).
  const int64_t J =
      std::max<int64_t>(1, static_cast<int64_t>(std::floor(N * options_.train_fraction() + 1e-9)));
  std::vector<int64_t> out;
  for (int64_t k : sde_steps)
    if (k < J) out.push_back(k);
  return out;
}

void FlowGRPO::prepare(RolloutBatch& batch, const Policies&, Rng&) {
  const double A_max = options_.adv_clip();
  batch.extras["advantage"] = batch.own(clipped_advantage(batch.step_rewards(), batch.group_size,
                                                          options_.std_scope(), options_.std_eps(),
                                                          A_max));  // [B]
}

LossOutput FlowGRPO::loss(const RolloutBatch& batch, const Policies& models, Rng&) {
  TORCH_CHECK(batch.trajectory.defined() && batch.log_prob.defined(),
              "flow-grpo: the batch has no SDE trajectory (rollout_spec was not honoured)");
  const int64_t b = batch.size(), N = static_cast<int64_t>(batch.grid.size()) - 1;
  const auto steps = trained_steps(batch.sde_steps, N);
  TORCH_CHECK(!steps.empty(), "flow-grpo: no trained steps");
  const int64_t J = static_cast<int64_t>(steps.size());
  const auto opts = batch.x0.options();
  const auto it = batch.extras.find("advantage");
  TORCH_CHECK(it != batch.extras.end(), "flow-grpo: prepare() was not called on the batch");

  // Every trained (step, sample) pair is one row (path_rows.h).
  const PathRows rows = path_rows(batch, steps);
  std::vector<double> x_coef, v_coef, std_row, var_dt;
  for (int64_t k : steps) {
    const double t = batch.grid[k], t_next = batch.grid[k + 1];
    const SdeCoefficients c = sde_coefficients(options_.noise_level(), t, t_next);
    x_coef.push_back(c.x_coef);
    v_coef.push_back(c.v_coef);
    std_row.push_back(c.std);
    // KL denominator 2 s^2: s^2 = sigma_t^2 |dt| (exact) or sigma_t^2 (the released code's form,
    // without |dt|)
    const double sigma = sde_sigma(options_.noise_level(), t, t_next);
    var_dt.push_back(options_.kl_form() == "exact" ? c.std * c.std : sigma * sigma);
  }
  const auto &x_k = rows.x, &x_next = rows.x_next, &t = rows.t;
  const Condition& cond = rows.cond;
  auto a_x = rows.per_row(x_coef), a_v = rows.per_row(v_coef), s = rows.per_row(std_row);

  auto v = models.policy.forward(x_k, t, cond);  // [J b, ...]
  auto mean = sde_mean(x_k, v, a_x, a_v);
  auto log_prob = gaussian_log_prob(x_next, mean, s, options_.log_prob());          // [J b]
  auto log_prob_old = batch.log_prob.index_select(0, rows.index).reshape({J * b});  // [J b]
  auto ratio = torch::exp(log_prob - log_prob_old);
  auto A = rows.of_sample(it->second.to(opts));  // [J b]
  const double eps = options_.clip_range();
  // The released code drops samples whose advantage is exactly 0 (every sample of a group with
  // equal rewards) before it forms minibatches, so the means run over the rest; `keep` does the
  // same per row.
  const auto keep =
      options_.drop_zero_adv() ? (A != 0).to(A.scalar_type()) : torch::ones_like(A);  // [J b]
  const auto kept = keep.sum().clamp_min(1.0);
  auto policy_loss = (keep * clipped_surrogate(ratio, A, eps)).sum() / kept;

  LossOutput out;
  out.loss = policy_loss;
  torch::Tensor kl;
  if (options_.kl() > 0) {
    torch::Tensor v_ref;
    {
      torch::NoGradGuard no_grad;
      v_ref = models.ref.forward(x_k, t, cond);
    }
    // mu_theta - mu_ref = v_coef (v_theta - v_ref)
    auto diff = (expand_time(a_v, v) * (v - v_ref)).reshape({J * b, -1});  // [J b, n]
    // The per-step KL reduced over coordinates as the log-density is (mean or sum), so that both
    // terms of the loss have one scale whatever the dimension D: with the released code's mean
    // log-density a summed KL would weigh D times more against the ratio (784x on Fashion-MNIST,
    // where it pinned the policy to the reference). The released code's form averages.
    auto sq = options_.kl_form() == "exact" && options_.log_prob() == "sum" ? diff.square().sum(1)
                                                                            : diff.square().mean(1);
    kl = (keep * (sq / (2.0 * rows.per_row(var_dt)))).sum() / kept;
    out.loss = out.loss + options_.kl() * kl;
  }
  {
    torch::NoGradGuard no_grad;
    const auto dev = (ratio - 1.0).abs();
    out.metrics["ratio_mean"] = ratio.mean().item<double>();
    out.metrics["kept_fraction"] = keep.mean().item<double>();
    out.metrics["nfe_train"] =
        static_cast<double>(J * (kl.defined() ? 2 : 1));  // policy (, ref) per step
    out.metrics["ratio_max_deviation"] = dev.max().item<double>();
    out.metrics["clip_fraction"] = (dev > eps).to(torch::kFloat).mean().item<double>();
    out.metrics["approx_kl_old"] = 0.5 * (log_prob - log_prob_old).square().mean().item<double>();
    if (kl.defined()) out.metrics["kl_ref"] = kl.item<double>();
  }
  return out;
}

void FlowGRPO::add_params(ParamTable& t) {
  t.group("Flow-GRPO (method flow-grpo)");
  t.number("grpo_noise", 0.7, "SDE noise level a: sigma_t = a sqrt(t / (1 - t))", 0, 10, true);
  t.number("grpo_clip", 1e-2,
           "clip range eps of the ratio (scale it with grpo_log_prob and the dimension)", 0, 100,
           true);
  t.number("grpo_kl", 0.0, "beta: weight of the KL to the reference per trained step", 0, 1e6);
  t.text("grpo_kl_form", "exact",
         "exact = |mu - mu_ref|^2 / (2 sigma^2 |dt|) (paper), reduced over coordinates as "
         "grpo_log_prob; code = mean over coordinates, without |dt|",
         {"exact", "code"});
  t.number("grpo_adv_clip", 5.0, "advantages are clamped to +-A_max", 0, 1e6, true);
  t.boolean("grpo_drop_zero_adv", true,
            "samples whose advantage is exactly 0 (a group of equal rewards) leave the loss "
            "(released code)");
  t.text("grpo_std_scope", "step",
         "advantage std over the step (global std, SD3 configs) or per group", {"group", "step"});
  t.number("grpo_std_eps", 1e-4, "added to the advantage std", 0, 1, true);
  t.text("grpo_log_prob", "mean",
         "per-step log-density: mean over coordinates (released code) or sum", {"mean", "sum"});
  t.number("grpo_train_fraction", 0.99, "trained share of the steps: steps 0 .. floor(N f) - 1", 0,
           1, true);
  t.integer("grpo_window", 0,
            "Fast variant: SDE and training on this many consecutive steps (0 = off)", 0, 100000);
  t.number("grpo_window_end", 0.5,
           "the window lies in the first window_end of the path (high noise)", 0, 1, true);
}

MethodPtr FlowGRPO::from_config(const Config& cfg) {
  return std::make_unique<FlowGRPO>(FlowGRPOOptions()
                                        .noise_level(cfg.number("grpo_noise"))
                                        .clip_range(cfg.number("grpo_clip"))
                                        .kl(cfg.number("grpo_kl"))
                                        .kl_form(cfg.text("grpo_kl_form"))
                                        .adv_clip(cfg.number("grpo_adv_clip"))
                                        .drop_zero_adv(cfg.boolean("grpo_drop_zero_adv"))
                                        .std_scope(cfg.text("grpo_std_scope"))
                                        .std_eps(cfg.number("grpo_std_eps"))
                                        .log_prob(cfg.text("grpo_log_prob"))
                                        .train_fraction(cfg.number("grpo_train_fraction"))
                                        .window(cfg.integer("grpo_window"))
                                        .window_end(cfg.number("grpo_window_end")));
}

}  // namespace ramflow
