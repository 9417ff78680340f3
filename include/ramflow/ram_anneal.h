#pragma once
// RAM with an annealed tilt: a variant designed to close RAM's gap to the exact target.
//
// RAM's fixed point is first-order in the signal m r: exact for a Gaussian reference with a linear
// reward, biased otherwise, and the bias grows with the size of the tilt (ram.h). The exact target
// factors into S smaller tilts,
//   p* ∝ p_ref exp(m r) = (((p_ref exp((m/S) r)) exp((m/S) r)) ...) exp((m/S) r),
// so stage s trains RAM with multiplier m/S against a frozen copy of the model that ended stage s -
// 1 (stage 1 uses the base model). Each stage's tilt is S times smaller, which shrinks the
// first-order error of its fixed point; the stages compound to the full tilt m. Stages last
// `stage_steps` steps; the last stage continues to the end of the run.
#include <memory>

#include "ramflow/ram.h"

namespace ramflow {

struct RAMAnnealOptions {
  TORCH_ARG(int64_t, stages) = 8;        // S
  TORCH_ARG(int64_t, stage_steps) = 60;  // trainer steps per stage (the last one runs on)
};

class RAMAnneal : public RAM {
 public:
  /// `ram` carries the full multiplier m; each stage uses m / S.
  RAMAnneal(RAMOptions ram, RAMAnnealOptions anneal);
  std::string name() const override { return "ram-anneal"; }
  /// Stage s = min(S, step / stage_steps + 1); entering a stage makes the reference a frozen copy
  /// of the policy.
  void begin_step(int64_t step, const Policies& models) override;
  /// RAM's loss against the current stage's reference.
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override;
  /// The stage and its frozen reference.
  MethodState state() const override;
  void load_state(const MethodState& state, const Policies& models) override;
  /// The current stage, 1 .. S.
  int64_t stage() const { return stage_; }

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  static RAMOptions per_stage(RAMOptions ram, int64_t stages);
  RAMAnnealOptions anneal_;
  double multiplier_;  // the full m
  int64_t stage_ = 1;
  VelocityFieldPtr stage_ref_;  // null in stage 1 (the base model is the reference)
};

}  // namespace ramflow
