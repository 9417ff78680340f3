#pragma once
// RAM with the exact tilt: a variant whose fixed point is the KL-optimal distribution itself,
// without reward gradients and without likelihoods.
//
// Why RAM stops short. Write p_s for the distribution a model v_s generates and Y = eps - x0 for
// the flow-matching target of a re-noised endpoint (x_t = (1 - t) x0 + t eps). The velocity of the
// tilt p_s e^{d r} / Z is the reweighted conditional mean (Bayes over the noising kernel, which the
// tilt leaves unchanged):
//   v_tilt(x) = E_s[w Y | x_t = x] / E_s[w | x_t = x],   w(x0) = e^{d r(x0)} / E_s[e^{d r}]. (1)
// RAM's target v_ref + m A (Y - v_copy) is the first-order expansion w ≈ 1 + d A of (1)
// (Lemma 4.2's right-endpoint rule), so its fixed point is exact only when the tilt path is affine
// in the reward (ram.h). ram-tilt solves (1) exactly.
//
// The regression. For endpoints x0 ~ p_s, re-noised as in pretraining, the weighted flow-matching
// loss
//   L0 = E[ w |v - Y|^2 ] (2)
// has, pointwise in x_t, the gradient 2 (E[w | x] v - E[w Y | x]), zero exactly at (1): the
// default. The anchored form (tilt_control), with the frozen v_s,
//   L1 = E[ w |v - v_s|^2 - 2 (w - 1) (v - v_s) . (Y - v_s) ]
//      = E[ | sqrt(w) (v - v_s) - ((w - 1) / sqrt(w)) (Y - v_s) |^2 ] + const (3)
// has the gradient 2 E[w | x] (v - v_s) - 2 E[(w - 1)(Y - v_s) | x], zero at
//   v = v_s + E[(w - 1)(Y - v_s) | x] / E[w | x] = E[w Y | x] / E[w | x]
// only when v_s is the conditional mean E_s[Y | x] of its own re-noised samples. (3) is RAM's
// regression with the weight w on each draw and the signal (w - 1) / w in place of m A (to first
// order in d the same target; with w = 1 the same zero-variance anchor |v - v_s|^2), so it has less
// variance than (2); but a rollout of finitely many sampler steps is not exactly the distribution
// whose mean velocity v_s is, and (3) turns that mismatch into a bias (docs/tuning.md measures
// both). RAM's coefficient m r is the first- order term of the weight e^{m r} - 1 (the
// Tilt-Matching remark in the research notes); here the weight is exact.
//
// The normaliser. E_s[e^{d r}] is a constant while v_s is frozen, so it is estimated from every
// endpoint drawn so far in the stage, per condition label ("running"); a group's own mean ("group")
// would keep the O(1/G) bias of self-normalised weights at every step.
//
// The stages. (1) needs endpoints from the model being tilted, so the tilt may be factored,
//   p* ∝ p_ref e^{m r} = (((p_ref e^{d r}) e^{d r}) ...) e^{d r},   d = m / S,
// and stage s draws its rollouts from (and anchors to) a frozen copy of the model that ended stage
// s - 1 (stage 1: the base model). The last stage's fixed point is p* itself, so it runs on. S > 1
// keeps the weights' spread (the weight_ess metric) in hand at large m; each stage inherits the
// last one's fitting error. Stages are a function of the step alone.
//
// Cost per step: the rollout (by the frozen model instead of the policy) and the reward as in RAM,
// and the policy's forward and backward pass on the K draws; no reference pass (the anchored form
// adds the stage model's forward pass).
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "ramflow/method.h"
#include "ramflow/time.h"

namespace ramflow {

struct RAMTiltOptions {
  TORCH_ARG(double, multiplier) = 5.0;             // m: the target is p_ref e^{m r}
  TORCH_ARG(int64_t, draws) = 4;                   // K (t, eps) draws per endpoint
  TORCH_ARG(int64_t, stages) = 1;                  // S: each stage tilts by d = m / S
  TORCH_ARG(int64_t, stage_steps) = 300;           // trainer steps per stage (the last one runs on)
  TORCH_ARG(std::string, normalizer) = "running";  // running | group: the estimate of E_s[e^{d r}]
  TORCH_ARG(bool,
            control) = false;  // the anchor v_s in (2); false: weighted flow matching w |v - Y|^2
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
  /// The stage, its frozen model and the running normaliser.
  MethodState state() const override;
  void load_state(const MethodState& state, const Policies& models) override;
  int64_t stage() const { return stage_; }

  /// w_i = e^{d r_i} / mean over i's group of e^{d r} [B], for rewards r [B] in groups of
  /// group_size.
  static torch::Tensor tilt_weights(const torch::Tensor& r, int64_t group_size, double d);

  static void add_params(ParamTable& table);
  static MethodPtr from_config(const Config& cfg);

 private:
  VelocityFieldImpl& stage_model(const Policies& models) const;
  RAMTiltOptions options_;
  int64_t stage_ = 1;
  VelocityFieldPtr frozen_;  // the model that ended stage s - 1; null in stage 1 (the base model)
  // The running normaliser: per condition label (-1 without conditions), log of the sum of e^{d r}
  // over every endpoint of the stage so far, and their count. Reset when a stage starts.
  std::map<int64_t, std::pair<double, double>> log_sum_count_;
};

}  // namespace ramflow
