#pragma once
// Advantage Weighted Matching (AWM): Xue et al., arXiv 2509.25050, and its released code
// (scxue/advantage_weighted_matching, scripts/train_sd3_awm.py, config/dgx_awm.py).
//
// Rollouts: any ODE sampler, by the current policy, endpoints only. Per endpoint, the advantage
//   A = clamp((r - group mean) / (std + eps), -A_max, A_max) / A_max * adv_max     (in [-adv_max,
//   adv_max])
// and K (t, eps) draws, drawn once per rollout in prepare() and shared by theta, the rollout
// policy, the reference and the EMA policy. Per draw, with mse = mean over coordinates of (v(x_t,
// t) - (eps - x0))^2, the "log-probability" surrogate
//   uniform:  l = -mse
//   t:        l = -t mse
//   ghuber:   l = -t ((mse + 1e-10)^p - 1e-10^p) / p,    p = 0.25 (released default: a robust,
//             noise-emphasising weight; the gradient flows through the power)
// and per draw the ratio rho = exp(l_theta - l_old), l_old from the rollout policy before the
// update:
//   L = mean over draws of max(-A rho, -A clamp(rho, 1 - clip, 1 + clip))
//     + beta mean |v_theta - v_ref|^2 + ema_beta mean |v_theta - v_ema|^2
// With clip = 1 (released) and one update per rollout the ratio is exactly 1 and the gradient is
// -A grad l_theta: the advantage-weighted flow-matching loss. At theta = old with A = 0 the policy
// gradient is exactly zero (tested). v_ema is the trainer's EMA old policy, used here for the
// trust-region term only (rollouts stay on-policy); its released schedule is decay min(0.3, 0.001
// step) (the method's preset: old_decay 0.3, old_ramp 0.001).
//
// Differences from the released code, on purpose: t is drawn from the time_* distribution (the
// released code stratifies 6 draws over indices 1 .. floor(0.9 N) of the 14-step shift-3 sampler
// grid), and the rollouts use a deterministic ODE sampler (the released SA-Solver adds noise 0.4
// for t in [0.3, 0.9] on GenEval and OCR, none on PickScore). Like elbo-pg and nft, AWM has no
// fixed KL temperature: compare it on the reward-KL frontier.
#include <string>

#include "ramflow/method.h"
#include "ramflow/time.h"

namespace ramflow {

struct AWMOptions {
  TORCH_ARG(std::string, weighting) = "ghuber";  // uniform | t | ghuber
  TORCH_ARG(double, power) = 0.25;               // p of ghuber
  TORCH_ARG(double, clip) = 1.0;                 // ratio clip range
  TORCH_ARG(double, kl) = 0.003;                 // beta (GenEval / OCR; 1e-4 PickScore)
  TORCH_ARG(double, ema_kl) = 1.0;               // ema_beta
  TORCH_ARG(double, adv_clip) = 5.0;             // A_max
  TORCH_ARG(double, adv_max) = 1.0;              // advantages rescaled to [-adv_max, adv_max]
  TORCH_ARG(std::string, std_scope) = "step";    // group | step
  TORCH_ARG(double, std_eps) = 1e-4;
  TORCH_ARG(int64_t, draws) = 4;  // K (released: 6)
  TORCH_ARG(TimeDistribution, time) = TimeDistribution();

 public:
  void validate() const;
  nlohmann::json to_json() const;
};

class AWM : public Method {
 public:
  explicit AWM(AWMOptions options);
  std::string name() const override { return "awm"; }
  /// The EMA policy of the trust-region term (ema_kl > 0); rollouts stay with the current policy.
  bool uses_old_policy() const override { return options_.ema_kl() > 0; }
  bool rollouts_from_old() const override { return false; }
  /// Advantages, the shared (t, eps) draws and l_old over the whole batch (extras).
  void prepare(RolloutBatch& batch, const Policies& models, Rng& rng) override;
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }
  /// The surrogate l per draw from v and the target u [b K, ...] at times t [b K]:  -> [b K]
  torch::Tensor surrogate(const torch::Tensor& v, const torch::Tensor& u,
                          const torch::Tensor& t) const;

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  AWMOptions options_;
};

}  // namespace ramflow
