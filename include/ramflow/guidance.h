#pragma once
// Classifier-free guidance, in one place: a velocity field that wraps a conditional model and
// returns the guided velocity
//   v_w(x, t, c) = v(x, t, null) + w (v(x, t, c) - v(x, t, null)),
// null = the task's null condition (Task::null_condition: the null label that pretraining's label
// dropout taught the model to read as "no condition", or the encoded empty prompt). w = 1 is the
// conditional model itself (one evaluation); w = 0 the unconditional one; otherwise the two
// evaluations run as one batch of 2B. Every sampler, rollout and evaluation that takes a model
// takes this wrapper unchanged (`--cfg` for rollouts, `--eval-cfg` for evaluation). Losses use the
// conditional prediction v(x, t, c) of the policy itself, as RAM's released code does.
#include "ramflow/velocity_field.h"

namespace ramflow {

/// A view, not a copy: it holds a reference to `model`, which must outlive it (a rollout or an
/// evaluation builds one on the stack around the model it samples).
class GuidedVelocityImpl : public VelocityFieldImpl {
 public:
  /// `model` must be conditional (it is called with the conditions and with `null`, one row); w >=
  /// 0.
  GuidedVelocityImpl(VelocityFieldImpl& model, double scale, Condition null);
  /// x [B, ...], t [B], cond (B rows) -> v_w [B, ...]. cond must be defined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  /// {"type": "guided", "scale": w, "model": the inner spec} (not a registered model: not for
  /// checkpoints).
  nlohmann::json spec() const override;
  double scale() const { return scale_; }
  VelocityFieldImpl& inner() { return model_; }

 private:
  VelocityFieldImpl& model_;
  double scale_;
  Condition null_;  // one row
};

}  // namespace ramflow
