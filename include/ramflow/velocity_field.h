#pragma once
// The velocity-field interface v_theta(x, t, cond) and the copies the trainers need: a frozen
// reference (v_ref) and an exponential moving average (the "old" policy, or an evaluation copy).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <nlohmann/json.hpp>

#include "ramflow/condition.h"
#include "ramflow/registry.h"
#include "ramflow/rng.h"

namespace ramflow {

/// A velocity field v(x, t, cond). x: [B, ...] (any trailing shape), t: [B] in [0, 1], cond: the
/// batch's conditions (condition.h; empty for unconditional models), whose tensors the model reads
/// by name. Returns v with x's shape.
class VelocityFieldImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                                const Condition& cond = {}) = 0;
  /// The spec that rebuilds this architecture: {"type": <registry name>, ...options}.
  virtual nlohmann::json spec() const = 0;
  /// Draws every parameter afresh from `rng` (never from torch's global generator, whose seed
  /// differs from process to process). The default accepts only models without parameters; a model
  /// with parameters overrides it.
  virtual void reset_parameters(Rng& rng);
  /// A copy of what trains: parameters this model keeps frozen may be shared with the copy rather
  /// than copied (a LoRA model shares its frozen base, lora.h). The default is a deep copy. Frozen
  /// copies and EMAs are made this way.
  virtual std::shared_ptr<VelocityFieldImpl> clone_trainable() const;
  /// Path prefixes of the parameters and buffers that are exactly the files the spec names, none
  /// written since they were read ("" for all of them; "base." for a LoRA wrapper's file-backed
  /// base): a checkpoint leaves them out and rebuilding the model from its spec restores them, so
  /// that a LoRA run on a multi-gigabyte base writes checkpoints of its adapters. Default: none.
  virtual std::vector<std::string> tensors_from_files() const { return {}; }
  /// Path prefixes of the parameters that post-training leaves as pretraining made them (a text
  /// encoder, as SD3's): full fine-tuning does not train them. Default: none.
  virtual std::vector<std::string> frozen_in_post_training() const { return {}; }
};
using VelocityFieldPtr = std::shared_ptr<VelocityFieldImpl>;

/// Builds a velocity field from its spec (the registry name is spec["type"]), its parameters drawn
/// by reset_parameters from Rng(init_seed): the same spec and seed give the same weights in every
/// process.
VelocityFieldPtr make_velocity_field(const nlohmann::json& spec, uint64_t init_seed = 0);

using ModelFactory = std::function<VelocityFieldPtr(const nlohmann::json& spec)>;
/// Every registered model name (filled by register_builtin_models in
/// src/models/builtin_models.cpp).
const Registry<ModelFactory>& models();

/// Copies every parameter and buffer of `from` into `to` (same architecture), by name.
void copy_weights(const VelocityFieldImpl& from, VelocityFieldImpl& to);

/// A deep copy: same spec, same weights, same device, same requires_grad flags.
VelocityFieldPtr clone_velocity_field(const VelocityFieldImpl& model);

/// A frozen copy (through clone_trainable) for v_ref or a stage's reference: no gradients, eval
/// mode.
VelocityFieldPtr frozen_copy(const VelocityFieldImpl& model);

/// An exponential moving average of a model's weights (a frozen copy; parameters it shares with the
/// model, such as a LoRA base, are left alone):
///   theta_ema <- d theta_ema + (1 - d) theta,   d = min(decay, ramp * updates)   (ramp <= 0: d =
///   decay)
/// With the ramp, the first update copies the model (d = 0), as in RAM's released code.
class EMA {
 public:
  EMA(const VelocityFieldImpl& model, double decay, double ramp = 0.0);
  void update(const VelocityFieldImpl& model);
  VelocityFieldImpl& model() { return *ema_; }
  const VelocityFieldImpl& model() const { return *ema_; }
  /// The decay the next update will use.
  double next_decay() const;
  int64_t updates() const { return updates_; }
  void set_updates(int64_t n) { updates_ = n; }

 private:
  VelocityFieldPtr ema_;
  double decay_;
  double ramp_;
  int64_t updates_ = 0;
};

/// Number of trainable scalars.
int64_t parameter_count(const VelocityFieldImpl& model);

}  // namespace ramflow
