#pragma once
// RAM with the exact tilt: a variant whose fixed point is the KL-optimal distribution itself, without
// reward gradients and without likelihoods.
//
// Why RAM stops short. Write p_s for the distribution a model v_s generates and Y = eps - x0 for the
// flow-matching target of a re-noised endpoint (x_t = (1 - t) x0 + t eps). The velocity of the tilt
// p_s e^{d r} / Z is the reweighted conditional mean (Bayes over the noising kernel, which the tilt leaves
// unchanged):
//   v_tilt(x) = E_s[w Y | x_t = x] / E_s[w | x_t = x],   w(x0) = e^{d r(x0)} / E_s[e^{d r}].      (1)
// RAM's target v_ref + m A (Y - v_copy) is the first-order expansion w ≈ 1 + d A of (1) (Lemma 4.2's
// right-endpoint rule), so its fixed point is exact only when the tilt path is affine in the reward
// (ram.h). ram-tilt solves (1) exactly.
//
// The regression. For endpoints x0 ~ p_s and the frozen v_s, the loss
//   L = E[ w |v - v_s|^2 - 2 (w - 1) (v - v_s) . (Y - v_s) ]
//     = E[ | sqrt(w) (v - v_s) - ((w - 1) / sqrt(w)) (Y - v_s) |^2 ] + const                      (2)
// has, pointwise in x_t, the gradient 2 E[w | x] (v - v_s) - 2 E[(w - 1)(Y - v_s) | x], zero at
//   v = v_s + E[(w - 1)(Y - v_s) | x] / E[w | x] = E[w Y | x] / E[w | x]
// when v_s is the conditional mean E_s[Y | x] of its own re-noised samples (a trained flow model): the
// tilt (1), exactly. (2) is RAM's regression with the weight w on each draw and the signal (w - 1) / w in
// place of m A: to first order in d the same target, and with w = 1 (no reward spread) the same zero-
// variance anchor |v - v_s|^2. It is the Tilt-Matching weight e^{d r} of the paper's §4 remark, made exact
// by the self-normalisation and the weight on the residual.
//
// The stages. (1) needs endpoints from the model being tilted, so the tilt is factored,
//   p* ∝ p_ref e^{m r} = (((p_ref e^{d r}) e^{d r}) ...) e^{d r},   d = m / S,
// and stage s draws its rollouts from, and anchors to, a frozen copy of the model that ended stage s - 1
// (stage 1: the base model). The last stage's fixed point is p* itself, so it runs on. w is normalised
// over each group (one condition per group, so Z is per condition); its spread shrinks with d, and so does
// the variance of (2). Cost per step: RAM's, plus the frozen model's forward pass on the K draws (the
// rollout is drawn by the frozen model instead of the policy). Stages are a function of the step alone.
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "ramflow/method.h"
#include "ramflow/time.h"

namespace ramflow {

struct RAMTiltOptions {
  TORCH_ARG(double, multiplier) = 5.0;   // m: the target is p_ref e^{m r}
  TORCH_ARG(int64_t, draws) = 4;         // K (t, eps) draws per endpoint
  TORCH_ARG(int64_t, stages) = 1;        // S: each stage tilts by d = m / S
  TORCH_ARG(int64_t, stage_steps) = 300;  // trainer steps per stage (the last one runs on)
  TORCH_ARG(std::string, normalizer) = "running";  // running | group: the estimate of E_s[e^{d r}]
  TORCH_ARG(bool, control) = false;  // the anchor v_s in (2); false: weighted flow matching w |v - Y|^2
  TORCH_ARG(TimeDistribution, time) = TimeDistribution();

 public:
  void validate() const;
  nlohmann::json to_json() const;
};

class RAMTilt : public Method {
 public:
  explicit RAMTilt(RAMTiltOptions options);
  std::string name() const override { return "ram-tilt"; }
  /// Stage s = min(S, step / stage_steps + 1); entering a stage freezes a copy of the policy.
  void begin_step(int64_t step, const Policies& models) override;
  /// The frozen model of the current stage (the base model in stage 1) draws the rollouts.
  VelocityFieldImpl* rollout_model(const Policies& models) override;
  /// The self-normalised weights w [B] of each group (extras["weight"]).
  void prepare(RolloutBatch& batch, const Policies& models, Rng& rng) override;
  LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) override;
  nlohmann::json options() const override { return options_.to_json(); }
  int64_t stage() const { return stage_; }

  /// w_i = e^{d r_i} / mean over i's group of e^{d r} [B], for rewards r [B] in groups of group_size.
  static torch::Tensor tilt_weights(const torch::Tensor& r, int64_t group_size, double d);

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  VelocityFieldImpl& stage_model(const Policies& models) const;
  RAMTiltOptions options_;
  int64_t stage_ = 1;
  VelocityFieldPtr frozen_;  // the model that ended stage s - 1; null in stage 1 (the base model)
  // The running normaliser: per condition label (-1 without conditions), log of the sum of e^{d r} over
  // every endpoint of the stage so far, and their count. Reset when a stage starts.
  std::map<int64_t, std::pair<double, double>> log_sum_count_;
};

}  // namespace ramflow
