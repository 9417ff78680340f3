#pragma once
// The method boundary. A method never runs its own loop: the shared Trainer draws the rollouts, scores
// them, and hands the batch to Method::loss; the method returns a differentiable loss. Method-specific
// shaping stays in the method's file; pure shared helpers live in advantage.h.
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "ramflow/config.h"
#include "ramflow/registry.h"
#include "ramflow/rng.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

/// One step's on-policy data. B = groups * group_size; sample i belongs to group i / group_size.
struct RolloutBatch {
  torch::Tensor x0;      // [B, ...] clean endpoints, no grad
  torch::Tensor cond;    // [B] condition labels, or undefined
  torch::Tensor reward;  // [B] float32, finite
  int64_t groups = 1;
  int64_t group_size = 0;
};

/// The models a loss may use. Only `policy` is trainable.
struct Policies {
  VelocityFieldImpl& policy;         // v_theta
  VelocityFieldImpl& ref;            // v_ref, frozen
  VelocityFieldImpl* old = nullptr;  // EMA "old" policy, when the method asked for it
};

struct LossOutput {
  torch::Tensor loss;                      // scalar, differentiable in the policy's parameters
  std::map<std::string, double> metrics;   // logged per step
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  /// True if rollouts and the stopped copy come from an EMA "old" policy instead of the current one.
  virtual bool uses_old_policy() const { return false; }
  virtual LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) = 0;
  /// The method's resolved options (written into checkpoints and summaries).
  virtual nlohmann::json options() const = 0;
};
using MethodPtr = std::unique_ptr<Method>;

/// A registered method: the config keys it owns, and a factory from a resolved config.
struct MethodInfo {
  std::function<void(ParamTable&)> add_params;
  std::function<MethodPtr(const Config&)> make;
};
const Registry<MethodInfo>& methods();

}  // namespace ramflow
