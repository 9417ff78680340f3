#pragma once
// Flow-GRPO: Liu et al., "Flow-GRPO: Training Flow Matching Models via Online RL", arXiv
// 2505.05470, and its released code (yifan123/flow_grpo: sd3_sde_with_logprob, train_sd3.py,
// stat_tracking.py).
//
// Rollouts run the SDE of sde.h with noise level a (every step, or a window of steps for the "Fast"
// variant) and keep each step's log-density log pi_old(x_k+1 | x_k). Per sample, the group
// advantage
//   A = clamp((r - group mean) / (std + eps), -A_max, A_max)      (std over the step: "global std")
// weights every trained step k of its path. With pi_theta's step density recomputed on the stored
// path,
//   ratio_k = exp(log pi_theta(x_k+1 | x_k) - log pi_old(x_k+1 | x_k))
//   L_clip  = mean over samples and steps of max(-A ratio_k, -A clamp(ratio_k, 1 - eps, 1 + eps))
//   L_KL    = mean over samples and steps of KL(pi_theta(. | x_k) || pi_ref(. | x_k))
//   loss    = L_clip + beta L_KL
// The step KL between the Gaussians N(mu_theta, s^2 I) and N(mu_ref, s^2 I), s^2 = sigma_t^2 |dt|,
// is
//   "exact": |mu_theta - mu_ref|^2 / (2 sigma_t^2 |dt|)          (the paper's form, a true KL)
//   "code":  mean over coordinates of (mu_theta - mu_ref)^2 / (2 sigma_t^2)   (the released code)
// with mu_theta - mu_ref = v_coef (v_theta - v_ref). The released code averages the log-density
// over coordinates, which divides the log-ratio by D: clip ranges are not comparable across the two
// reductions or across dimensions. The exact KL is reduced as the log-density is (log_prob: the
// true KL for "sum", 1/D of it for "mean"), so that beta weighs the two terms alike in any
// dimension; "exact" with "mean" is the released form divided by |dt|. Trained steps: the first
// floor(N train_fraction) stochastic steps (the last step, where sigma_t |dt| is tiny, is skipped
// by default), or every step of the window. The first minibatch of a rollout is on-policy, so its
// ratio is exactly 1 (tests check it bit for bit).
#include <string>

#include "ramflow/method.h"

namespace ramflow {

struct FlowGRPOOptions {
  TORCH_ARG(double, noise_level) = 0.7;       // a
  TORCH_ARG(double, clip_range) = 1e-2;       // eps of the clipped ratio
  TORCH_ARG(double, kl) = 0.0;                // beta
  TORCH_ARG(std::string, kl_form) = "exact";  // exact | code
  TORCH_ARG(double, adv_clip) = 5.0;          // A_max
  TORCH_ARG(bool,
            drop_zero_adv) = true;  // samples with A = 0 (a flat group) leave the loss (released)
  TORCH_ARG(std::string, std_scope) = "step";  // group | step
  TORCH_ARG(double, std_eps) = 1e-4;
  TORCH_ARG(std::string, log_prob) = "mean";  // mean | sum over coordinates
  TORCH_ARG(double, train_fraction) = 0.99;   // trained share of the steps (whole-path SDE)
  TORCH_ARG(int64_t, window) = 0;             // > 0: the Fast variant, SDE on this many steps only
  TORCH_ARG(double, window_end) = 0.5;  // the window lies inside the first window_end of the path

 public:
  void validate() const;
  nlohmann::json to_json() const;
};

class FlowGRPO : public Method {
 public:
  explicit FlowGRPO(FlowGRPOOptions options);
  std::string name() const override { return "flow-grpo"; }
  RolloutSpec rollout_spec() const override;
  /// The advantage, over the whole batch (extras["advantage"]).
  void prepare(RolloutBatch& batch, const Policies& models, Rng& rng) override;
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }
  /// The trained steps of a rollout with the given stochastic steps and N grid steps.
  std::vector<int64_t> trained_steps(const std::vector<int64_t>& sde_steps, int64_t N) const;

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  FlowGRPOOptions options_;
};

}  // namespace ramflow
