#pragma once
// Adjoint Matching: Domingo-Enrich, Drozdzal, Karrer, Chen, "Adjoint Matching: Fine-tuning Flow and
// Diffusion Generative Models with Memoryless Stochastic Optimal Control", ICLR 2025, arXiv
// 2409.08861. Written in ramflow's time (t = 1 noise, t = 0 data); the paper's time is tau = 1 - t
// and v_AM = -v.
//
// Rollouts: the memoryless SDE of sde.h (a = sqrt 2) with the current policy, no grad, keeping the
// path. With c_k = sigma_k^2 / (2 t_k) and the step x_k+1 = x_k + dt_k [(1 + c_k (1 - t_k)) v + c_k
// x_k] + noise, the lean adjoint runs from the data end back to the noise end with vector-Jacobian
// products of the frozen base v_ref only (the terms in grad u vanish at the optimum):
//   a_N = -m grad r(x_N)                                       (terminal cost g = -m r, m = 1 /
//   lambda) a_k = a_k+1 + dt_k [ (1 + c_k (1 - t_k)) J_vref(x_k, t_k)^T a_k+1 + c_k a_k+1 ]
// This is the exact discrete adjoint of the SDE step with v = v_ref (tests check it against
// autograd). The control of the fine-tuned drift is u = -(1 + c (1 - t)) (v_theta - v_ref) / sigma
// and the optimal one is u* = -sigma a, so the adjoint-matching loss on the trained steps is
//   L = mean over samples and steps of | (1 + c_k (1 - t_k)) (v_theta - v_ref)(x_k, t_k) / sigma_k
//   - sigma_k a_k |^2
// (sum over coordinates). For a = sqrt 2 its fixed point is v_theta = v_ref + t / (1 - t) a_t, and
// the fine-tuned model samples p* ∝ p_ref exp(m r) exactly (the memoryless schedule removes the
// value-function bias). The reward must be differentiable.
#include <string>
#include <vector>

#include "ramflow/method.h"

namespace ramflow {

/// The lean adjoint along a stored path: x [N + 1, B, ...] at the grid times, terminal = a_N [B,
/// ...]. Returns a [N + 1, B, ...] (a[N] = terminal). Uses VJPs of `base`; noise level a of the
/// rollout SDE.
torch::Tensor lean_adjoint(VelocityFieldImpl& base, const std::vector<double>& grid,
                           const torch::Tensor& x, const Condition& cond,
                           const torch::Tensor& terminal, double a);

struct AdjointMatchingOptions {
  TORCH_ARG(double, multiplier) = 5.0;  // m = 1 / lambda
  TORCH_ARG(double,
            train_fraction) = 1.0;  // share of the steps in the loss, drawn at random each update
  TORCH_ARG(double,
            noise_level) = 1.4142135623730951;  // a = sqrt 2: memoryless (do not change lightly)

 public:
  void validate() const;
  nlohmann::json to_json() const;
};

class AdjointMatching : public Method {
 public:
  explicit AdjointMatching(AdjointMatchingOptions options);
  std::string name() const override { return "adjoint-matching"; }
  RolloutSpec rollout_spec() const override;
  /// The lean adjoint of every path (extras["adjoint"], [B, N + 1, ...]).
  void prepare(RolloutBatch& batch, const Policies& models, Rng& rng) override;
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  AdjointMatchingOptions options_;
};

}  // namespace ramflow
