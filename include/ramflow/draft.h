#pragma once
// DRaFT-K: Clark, Vicol, Swersky, Fleet, "Directly Fine-Tuning Diffusion Models on Differentiable
// Rewards", ICLR 2024, arXiv 2309.17400, in its flow form. The rollout is the Euler ODE of the
// current policy (no grad, path kept). The loss re-runs the last K steps from the stored x_{N-K}
// with gradients,
//   x_k+1 = x_k + dt_k v_theta(x_k, t_k),   k = N-K .. N-1,
// and maximises the reward of the result: loss = -mean r(x_N). Gradients reach the policy through
// the reward and the last K steps only (K = 1 is the paper's usual choice; K = N is full
// backpropagation). There is no KL term: the only regularisers are the learning rate and the number
// of steps. The reward must be differentiable.
#include <string>

#include "ramflow/method.h"

namespace ramflow {

struct DRaFTOptions {
  TORCH_ARG(int64_t, k) = 1;  // steps back-propagated through

 public:
  void validate() const;
  nlohmann::json to_json() const { return {{"k", k_}}; }
};

class DRaFT : public Method {
 public:
  explicit DRaFT(DRaFTOptions options);
  std::string name() const override { return "draft"; }
  RolloutSpec rollout_spec() const override;
  bool needs_reward_gradient() const override { return true; }
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  DRaFTOptions options_;
};

}  // namespace ramflow
