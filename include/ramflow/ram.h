#pragma once
// Reinforce Adjoint Matching (RAM): Bergmeister, Jegelka, Nüsken, Domingo-Enrich, Pidstrigach,
// "Reinforce Adjoint Matching: Scaling RL Post-Training of Diffusion and Flow-Matching Models",
// arXiv 2605.10759, Eq. 17 (the RAM loss) and Algorithm 1.
//
// For each on-policy endpoint x0 (any ODE sampler, no grad) with reward r(x0), draw K pairs (t,
// eps):
//   x_t    = (1 - t) x0 + t eps                                   (pretraining's noising,
//   unchanged) target = v_ref(x_t, t) + s(x0) ((eps - x0) - v_copy(x_t, t))  (all under
//   stop-gradient) loss   = mean over draws and coordinates of (v_theta(x_t, t) - target)^2
// where the reward signal s is
//   raw         m r(x0)                              (paper form; m = 1 / lambda)
//   centered    m (r - group mean)
//   normalized  m (r - group mean) / (std + eps)     (released code; std per group or over the
//   step)
// and the stopped copy v_copy is
//   current     v_theta itself, detached             (paper form: the same forward pass, no extra
//   cost) ema         an EMA "old" policy that also draws the rollouts (released-code form)
//
// The semigradient equals that of ||v - v_ref||^2 + s ||v - (eps - x0)||^2: a reference anchor plus
// reward-weighted flow matching. With s = 0 and v_theta = v_ref the loss and its gradient are
// exactly 0. Population fixed point: v - v_ref = E[s(X0) ((eps - X0) - v) | X_t = x], exact for a
// Gaussian reference with a linear reward and first-order in the reward otherwise (paper §4.1).
#include <string>

#include "ramflow/method.h"
#include "ramflow/time.h"

namespace ramflow {

struct RAMOptions {
  TORCH_ARG(double, multiplier) = 5.0;          // m = 1 / lambda
  TORCH_ARG(int64_t, draws) = 4;                // K (t, eps) draws per endpoint
  TORCH_ARG(std::string, signal) = "raw";       // raw | centered | normalized
  TORCH_ARG(std::string, std_scope) = "group";  // group | step (normalized signal only)
  TORCH_ARG(double, std_eps) = 1e-4;
  TORCH_ARG(std::string, target_copy) = "current";  // current | ema
  TORCH_ARG(TimeDistribution, time) = TimeDistribution();

 public:
  /// Throws ConfigError on an unknown choice or bad value.
  void validate() const;
  nlohmann::json to_json() const;
};

class RAM : public Method {
 public:
  explicit RAM(RAMOptions options);
  std::string name() const override { return "ram"; }
  bool uses_old_policy() const override { return options_.target_copy() == "ema"; }
  /// The signal uses group statistics, so it is computed on the whole batch (extras["signal"]).
  void prepare(RolloutBatch& batch, const Policies& models, Rng& rng) override;
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }
  const RAMOptions& ram_options() const { return options_; }

  /// The per-endpoint signal s(x0) [B] for a batch (exposed for tests).
  torch::Tensor signal(const RolloutBatch& batch) const;

  /// Config keys of RAM and the factory (registered in builtin_methods.cpp).
  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  RAMOptions options_;
};

}  // namespace ramflow
