#pragma once
// DiffusionNFT: Zheng et al., "DiffusionNFT: Online Diffusion Reinforcement with Forward Process",
// arXiv 2509.16117, and its released code (NVlabs/DiffusionNFT, scripts/train_nft_sd3.py).
//
// Rollouts: any ODE sampler, drawn by a lagging "old" policy (the trainer's EMA old policy; NFT's
// schedule is old_decay 0.5 with old_ramp 0.001: d = min(0.001 step, 0.5)). Only the clean
// endpoints and their rewards are kept. Per endpoint, the optimality probability
//   r = clamp(0.5 + A / (2 A_max), 0, 1),   A = clamp(group advantage, -A_max, A_max)
// and on the forward process x_t = (1 - t) x0 + t eps, u = eps - x0 (K draws per endpoint):
//   v+ = (1 - beta) v_old + beta v_theta      (implicit positive policy)
//   v- = (1 + beta) v_old - beta v_theta      (implicit negative policy, the mirror)
//   L  = A_max / beta mean[ r l(v+) + (1 - r) l(v-) ] + beta_KL mean |v_theta - v_ref|^2
// with l(v) = mean over coordinates of (v - u)^2 ("velocity", the paper's form) or, in the released
// code's x0 form, l(v) = mean (x0_hat(v) - x0)^2 / sg(mean |x0_hat(v) - x0|), x0_hat(v) = x_t - t
// v, so x0_hat - x0 = t (v - u) ("x0", an adaptive weight). At theta = old with r = 0.5 the policy
// term's gradient is exactly zero: v+ = v- = v_old and the two terms cancel.
#include <string>

#include "ramflow/method.h"
#include "ramflow/time.h"

namespace ramflow {

struct NFTOptions {
  TORCH_ARG(double, beta) = 1.0;      // NFT strength (config.beta)
  TORCH_ARG(double, kl) = 1e-4;       // beta_KL (config.train.beta)
  TORCH_ARG(double, adv_clip) = 5.0;  // A_max
  TORCH_ARG(std::string, std_scope) = "step";
  TORCH_ARG(double, std_eps) = 1e-4;
  TORCH_ARG(std::string, loss_form) = "x0";  // velocity | x0
  TORCH_ARG(int64_t, draws) = 4;             // K (t, eps) draws per endpoint (continuous times)
  // Training times: "continuous" draws K times from `time`; "grid" trains, as the released code
  // does, on floor(N grid_fraction) distinct levels of the rollout's own grid t_0 = 1 > ... >
  // t_{N-1} per endpoint (a random subset, t = 1 included when drawn), each with a fresh eps.
  TORCH_ARG(std::string, times) = "continuous";
  TORCH_ARG(double, grid_fraction) = 0.99;
  TORCH_ARG(TimeDistribution, time) = TimeDistribution();

 public:
  void validate() const;
  nlohmann::json to_json() const;
};

class NFT : public Method {
 public:
  explicit NFT(NFTOptions options);
  std::string name() const override { return "nft"; }
  bool uses_old_policy() const override { return true; }
  /// The optimality probability r over the whole batch (extras["optimality"]).
  void prepare(RolloutBatch& batch, const Policies& models, Rng& rng) override;
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

  /// Grid times [B J] for the batch: J = floor(N grid_fraction) distinct levels of batch.grid per
  /// endpoint, row b*J + j for endpoint b.
  torch::Tensor grid_times(const RolloutBatch& batch, Rng& rng) const;

 private:
  NFTOptions options_;
};

}  // namespace ramflow
