// DiffusionNFT (see include/ramflow/nft.h for the equations and sources).
#include "ramflow/nft.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/torch.h>

#include "ramflow/advantage.h"
#include "ramflow/conventions.h"
#include "ramflow/errors.h"
#include "ramflow/renoise.h"

namespace ramflow {

void NFTOptions::validate() const {
  if (!(beta_ > 0)) throw ConfigError("nft: beta must be > 0");
  if (kl_ < 0) throw ConfigError("nft: kl must be >= 0");
  if (!(adv_clip_ > 0)) throw ConfigError("nft: adv_clip must be > 0");
  if (std_scope_ != "group" && std_scope_ != "step")
    throw ConfigError("nft: std_scope must be group or step, got '" + std_scope_ + "'");
  if (loss_form_ != "velocity" && loss_form_ != "x0")
    throw ConfigError("nft: loss_form must be velocity or x0, got '" + loss_form_ + "'");
  if (draws_ < 1) throw ConfigError("nft: draws must be >= 1");
  if (times_ != "continuous" && times_ != "grid")
    throw ConfigError("nft: times must be continuous or grid, got '" + times_ + "'");
  if (!(grid_fraction_ > 0 && grid_fraction_ <= 1))
    throw ConfigError("nft: grid_fraction must be in (0, 1]");
  time_.validate();
}

nlohmann::json NFTOptions::to_json() const {
  return {{"beta", beta_},         {"kl", kl_},
          {"adv_clip", adv_clip_}, {"std_scope", std_scope_},
          {"std_eps", std_eps_},   {"loss_form", loss_form_},
          {"draws", draws_},       {"time_dist", time_.kind},
          {"times", times_},       {"grid_fraction", grid_fraction_}};
}

NFT::NFT(NFTOptions options) : options_(std::move(options)) { options_.validate(); }

void NFT::prepare(RolloutBatch& batch, const Policies&, Rng&) {
  const double A_max = options_.adv_clip();
  auto A = batch.own(clipped_advantage(batch.step_rewards(), batch.group_size, options_.std_scope(),
                                       options_.std_eps(), A_max));
  batch.extras["optimality"] = (0.5 + A / (2.0 * A_max)).clamp(0.0, 1.0);  // r in [0, 1], [B]
}

torch::Tensor NFT::grid_times(const RolloutBatch& batch, Rng& rng) const {
  const int64_t B = batch.size(), N = static_cast<int64_t>(batch.grid.size()) - 1;
  TORCH_CHECK(N >= 1, "nft: the batch has no rollout grid (times 'grid')");
  const int64_t J =
      std::max<int64_t>(1, static_cast<int64_t>(std::floor(N * options_.grid_fraction() + 1e-9)));
  // A uniformly random J-subset of the levels 0 .. N-1 per endpoint: the first J of a random
  // permutation (argsort of uniform draws).
  const auto levels = std::get<1>(batch.rows.rand(rng, {B, N}).sort(/*dim=*/1))
                          .narrow(1, 0, J)
                          .contiguous();  // [B, J]
  const auto grid =
      torch::tensor(std::vector<double>(batch.grid.begin(), batch.grid.end() - 1), torch::kDouble);
  return grid.index_select(0, levels.view({-1})).to(batch.x0.options());  // [B J]
}

LossOutput NFT::loss(const RolloutBatch& batch, const Policies& models, Rng& rng) {
  TORCH_CHECK(models.old != nullptr, "nft: needs the old policy");
  const auto it = batch.extras.find("optimality");
  TORCH_CHECK(it != batch.extras.end(), "nft: prepare() was not called on the batch");
  const int64_t B = batch.size();
  const auto opts = batch.x0.options();
  const Renoised p =
      options_.times() == "grid"
          ? renoise_at(batch.x0, batch.cond, grid_times(batch, rng), rng, batch.rows)
          : renoise(batch.x0, batch.cond, options_.draws(), options_.time(), rng, batch.rows);
  const int64_t K = p.t.size(0) / B;  // [B K, ...]
  const auto &x_t = p.x_t, &t = p.t;
  const Condition& cond = p.cond;
  auto r = repeat_rows(it->second.to(opts), K);  // [B K]
  auto u = velocity_target(p.x0, p.eps);

  torch::Tensor v_old, v_ref;
  {
    torch::NoGradGuard no_grad;
    v_old = models.old->forward(x_t, t, cond);
    if (options_.kl() > 0) v_ref = models.ref.forward(x_t, t, cond);
  }
  auto v = models.policy.forward(x_t, t, cond);
  const double beta = options_.beta();
  auto v_pos = (1.0 - beta) * v_old + beta * v;
  auto v_neg = (1.0 + beta) * v_old - beta * v;
  auto per_sample = [&](const torch::Tensor& v_pm) {  // l(v) per row -> [B K]
    auto err = (v_pm - u).reshape({B * K, -1});
    if (options_.loss_form() == "velocity") return err.square().mean(1);
    // x0_hat - x0 = t (v - u); adaptive weight 1 / sg(mean |x0_hat - x0|), floored at 1e-5
    auto e0 = err * t.view({B * K, 1});
    return e0.square().mean(1) / e0.detach().abs().mean(1).clamp_min(1e-5);
  };
  auto policy_loss =
      options_.adv_clip() / beta * (r * per_sample(v_pos) + (1.0 - r) * per_sample(v_neg)).mean();
  LossOutput out;
  out.loss = policy_loss;
  if (options_.kl() > 0) out.loss = out.loss + options_.kl() * (v - v_ref).square().mean();
  {
    torch::NoGradGuard no_grad;
    out.metrics["optimality_mean"] = it->second.mean().item<double>();
    out.metrics["nfe_train"] =
        static_cast<double>(K * (options_.kl() > 0 ? 3 : 2));  // policy, old (, ref)
    out.metrics["drift_from_old"] = (v.detach() - v_old).square().mean().item<double>();
  }
  return out;
}

void NFT::add_params(ParamTable& t) {
  t.group("DiffusionNFT (method nft; uses --draws and the time_* keys)");
  t.number("nft_beta", 1.0, "NFT strength beta: v+- = (1 -+ beta) v_old +- beta v", 0, 1e3, true);
  t.number("nft_kl", 1e-4, "beta_KL: weight of mean |v - v_ref|^2", 0, 1e6);
  t.number("nft_adv_clip", 5.0, "A_max: advantages are clamped to +-A_max", 0, 1e6, true);
  t.text("nft_std_scope", "step", "advantage std over the step (global std) or per group",
         {"group", "step"});
  t.text("nft_loss", "x0",
         "velocity = mean (v - u)^2 (paper); x0 = the released code's adaptive x0 form",
         {"velocity", "x0"});
  t.text("nft_times", "continuous",
         "training times: continuous = K draws from the time_* law; grid = floor(N f) levels of "
         "the rollout's "
         "grid per endpoint (released code)",
         {"continuous", "grid"});
  t.number("nft_grid_fraction", 0.99,
           "f: share of the rollout grid's N levels trained per endpoint (grid times)", 0, 1, true);
}

MethodPtr NFT::from_config(const Config& cfg) {
  if (cfg.text("nft_times") == "grid") {
    for (const char* key : {"draws", "time_dist", "time_alpha", "time_mean", "time_std"})
      if (cfg.is_explicit(key))
        throw ConfigError(std::string("--") + key +
                          " does not apply with --nft-times grid (the times are the " +
                          "rollout grid's levels)");
  }
  return std::make_unique<NFT>(NFTOptions()
                                   .beta(cfg.number("nft_beta"))
                                   .kl(cfg.number("nft_kl"))
                                   .adv_clip(cfg.number("nft_adv_clip"))
                                   .std_scope(cfg.text("nft_std_scope"))
                                   .loss_form(cfg.text("nft_loss"))
                                   .draws(cfg.integer("draws"))
                                   .times(cfg.text("nft_times"))
                                   .grid_fraction(cfg.number("nft_grid_fraction"))
                                   .time(time_distribution_from(cfg)));
}

}  // namespace ramflow
