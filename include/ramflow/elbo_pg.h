#pragma once
// The ELBO policy gradient: "Rethinking the Design Space of Reinforcement Learning for Diffusion
// Models: On the Importance of Likelihood Estimation Beyond Loss Design" (Choi et al., arXiv
// 2602.04663).
//
// RECONSTRUCTED. The paper's body and code were not available; its abstract says that an ELBO-based
// likelihood computed only from the final sample is the dominant factor, ahead of the choice of
// loss, and secondary summaries name the losses EPG (REINFORCE) and PEPG (PPO-style) with a fast
// ODE sampler. What follows is the standard construction from those facts, not the paper's exact
// recipe.
//
// Rollouts: any ODE sampler, by the current policy, endpoints only (no SDE, no path). Per endpoint
// x0, the group advantage
//   A = clamp((r - group mean) / (std + eps), -A_max, A_max)
// and the ELBO estimate of elbo.h with K (t, eps) draws, drawn once per rollout in prepare() and
// shared by theta and the rollout ("old") policy (common random numbers), so the log-ratio estimate
// ELBO_theta - ELBO_old carries no noise of its own at theta = old:
//   EPG  (form "epg"):   L = -mean_i A_i ELBO_theta(x0_i)
//                        = mean_i A_i 1/K sum_k w_k |v_theta(x_t) - (eps - x0)|^2
//                        (advantage-weighted FM); its gradient is -A grad ELBO (tested against the
//                        ELBO written out)
//   PEPG (form "pepg"):  rho_i = exp(ELBO_theta(x0_i) - ELBO_old(x0_i)),
//                        L = mean_i max(-A_i rho_i, -A_i clamp(rho_i, 1 - clip, 1 + clip))
// plus beta_KL mean |v_theta - v_ref|^2 on the same points (a velocity-space penalty toward the
// base). Weighting "elbo" is the true ELBO weight (1 - t)/t on [t_min, 1] (importance-sampled,
// elbo.h); "uniform" is the plain flow-matching loss with t from the time_* keys ("the ELBO up to
// weighting"). The ELBO sums over coordinates, so the log-ratio grows with the dimension: scale
// `clip` with it.
//
// The KL weight is not the m of RAM: this method has no fixed KL temperature (normalised advantages
// rescale the reward in every group), so compare it on the reward-KL frontier, not at one m.
#include <string>

#include "ramflow/method.h"
#include "ramflow/time.h"

namespace ramflow {

struct ElboPGOptions {
  TORCH_ARG(std::string, form) = "epg";           // epg | pepg
  TORCH_ARG(std::string, weighting) = "uniform";  // elbo | uniform
  TORCH_ARG(double, t_min) = 1e-3;                // delta of the "elbo" weighting
  TORCH_ARG(double, clip) = 0.2;                  // PEPG's ratio clip range
  TORCH_ARG(double, kl) = 2.0;                    // beta_KL
  TORCH_ARG(double, adv_clip) = 5.0;              // A_max
  TORCH_ARG(std::string, std_scope) = "step";     // group | step
  TORCH_ARG(double, std_eps) = 1e-4;
  TORCH_ARG(int64_t, draws) = 4;                           // K
  TORCH_ARG(TimeDistribution, time) = TimeDistribution();  // "uniform" weighting only

 public:
  void validate() const;
  nlohmann::json to_json() const;
};

class ElboPG : public Method {
 public:
  explicit ElboPG(ElboPGOptions options);
  std::string name() const override { return "elbo-pg"; }
  /// Advantages, the shared (t, eps) draws and, for PEPG, ELBO_old over the whole batch (extras).
  void prepare(RolloutBatch& batch, const Policies& models, Rng& rng) override;
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  ElboPGOptions options_;
};

}  // namespace ramflow
