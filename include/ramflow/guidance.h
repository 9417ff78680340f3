#pragma once
// Classifier-free guidance, in one place: a velocity field that wraps a class-conditional model and
// returns the guided velocity
//   v_w(x, t, c) = v(x, t, null) + w (v(x, t, c) - v(x, t, null)),
// null = kNullLabel (task.h), the condition that pretraining's label dropout taught the model to read as
// "no condition". w = 1 is the conditional model itself (one evaluation); w = 0 the unconditional one;
// otherwise the two evaluations run as one batch of 2B. Every sampler, rollout and evaluation that takes a
// model takes this wrapper unchanged (`--cfg` for rollouts, `--eval-cfg` for evaluation). Losses use the
// conditional prediction v(x, t, c) of the policy itself, as RAM's released code does.
#include "ramflow/velocity_field.h"

namespace ramflow {

class GuidedVelocityImpl : public VelocityFieldImpl {
 public:
  /// `model` must be conditional (it is called with labels and with kNullLabel); w >= 0.
  GuidedVelocityImpl(VelocityFieldPtr model, double scale);
  /// x [B, ...], t [B], cond [B] -> v_w [B, ...]. cond must be defined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cond = {}) override;
  /// {"type": "guided", "scale": w, "model": the inner spec} (not a registered model: not for checkpoints).
  nlohmann::json spec() const override;
  double scale() const { return scale_; }
  VelocityFieldImpl& inner() { return *model_; }

 private:
  VelocityFieldPtr model_;
  double scale_;
};
TORCH_MODULE(GuidedVelocity);

/// `model` guided with scale w, or `model` itself when w == 1 (no wrapper, no extra cost).
VelocityFieldPtr guided(VelocityFieldPtr model, double scale);

}  // namespace ramflow
