#pragma once
// Flow-matching pretraining:  L_FM(theta) = E_{t, x0, eps} || v_theta(x_t, t) - (eps - x0) ||^2,
// x_t = (1 - t) x0 + t eps. Its minimiser is v(x, t) = E[eps - x0 | x_t = x].
// Conditional data: v(x, t, c) for conditions c; with label dropout p, each condition is replaced
// by the task's null condition (Task::null_condition) with probability p, so one network also
// learns the unconditional velocity v(x, t, null) that classifier-free guidance (guidance.h) needs.
// An EMA of the weights (decay `ema`) is kept when ema > 0; at the end the model holds the EMA
// weights.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include "ramflow/adamw.h"
#include "ramflow/rng.h"
#include "ramflow/safetensors.h"
#include "ramflow/time.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

struct PretrainOptions {
  TORCH_ARG(int64_t, steps) = 5000;
  TORCH_ARG(int64_t, batch) = 256;
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(TimeDistribution, time) = TimeDistribution();
  TORCH_ARG(double, label_dropout) = 0.0;  // probability of the null condition (conditional data)
  TORCH_ARG(Condition, null_condition) = Condition();  // one row; required when label_dropout > 0
  TORCH_ARG(double, ema) = 0.0;                        // EMA decay of the weights; 0 = none
  TORCH_ARG(double, grad_clip) = 0.0;                  // max global gradient norm; 0 = off
};

struct PretrainRecord {
  int64_t step = 0;  // 1-based
  double loss = 0;
  double seconds = 0;  // cumulative over this process's steps
  /// The weights a checkpoint taken now should hold: the EMA when options.ema > 0, else the model.
  const VelocityFieldImpl* weights = nullptr;
};

/// Draws n data samples x0 [n, ...] (and, for conditional data, writes their n conditions into
/// *cond).
using DataSampler = std::function<torch::Tensor(int64_t n, Rng& rng, Condition* cond)>;

/// Pretraining one step at a time, with a state that continues bit for bit: the model, the EMA,
/// the optimiser's moments, the step count and where the random stream stands (one stream from
/// Rng(seed): each step draws its batch, its label dropout and its (t, eps) from it, in turn).
class Pretrainer {
 public:
  /// Trains `model` (which must outlive this) in place with Adam (weight decay 0). ConfigError for
  /// bad options.
  Pretrainer(VelocityFieldImpl& model, DataSampler data, PretrainOptions options);
  /// One step (the next of steps_done() + 1); NumericalError for a non-finite loss.
  PretrainRecord step();
  int64_t steps_done() const { return steps_; }
  /// The EMA when options.ema > 0, else the model.
  const VelocityFieldImpl& weights() const;
  /// "optimizer.m", "optimizer.v" (AdamW's moments), "rng" (the stream's state, uint8) and, with
  /// an EMA, "ema.<path>" of each of its parameters and buffers; the step count is steps_done().
  NamedTensors state() const;
  /// Restores state() taken after `steps` steps into a pretrainer built with the same model
  /// architecture and options (the model's weights are the caller's to restore); InputError naming
  /// `source` for a tensor that is missing or does not fit.
  void load_state(const NamedTensors& tensors, int64_t steps, const std::string& source);
  /// The end: the model takes the EMA's weights (when there is one) and eval mode.
  void finish();

 private:
  VelocityFieldImpl& model_;
  DataSampler data_;
  PretrainOptions options_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<AdamW> optimizer_;
  std::optional<EMA> ema_;
  Rng rng_;
  int64_t steps_ = 0;
  std::chrono::steady_clock::time_point start_;
};

/// Trains `model` in place with Adam for options.steps steps (a Pretrainer). `on_step` (optional)
/// is called after every step. With ema > 0 the model ends holding the EMA weights.
void pretrain_flow_matching(VelocityFieldImpl& model, const DataSampler& data,
                            const PretrainOptions& options,
                            const std::function<void(const PretrainRecord&)>& on_step = {});

/// The flow-matching loss of `model` on a batch x0 (with its conditions, or the empty condition).
torch::Tensor flow_matching_loss(VelocityFieldImpl& model, const torch::Tensor& x0,
                                 const Condition& cond, const TimeDistribution& time, Rng& rng);

}  // namespace ramflow
