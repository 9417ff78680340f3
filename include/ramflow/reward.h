#pragma once
// Rewards: a black-box score of clean endpoints, higher is better, one finite float per sample.
// A reward says whether it is differentiable; methods that need reward gradients refuse the others.
// Rewards are built from JSON specs: {"type": <registry name>, ...fields}; unknown fields are
// errors.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/condition.h"
#include "ramflow/registry.h"

namespace ramflow {

/// r(x) = -1/2 x^T Q x + b^T x + c, in float64 (Q: [D, D] symmetric, b: [D]). Linear and quadratic
/// rewards, and weighted sums of them, have one; it gives the exact tilt of Gaussian mixtures.
struct QuadraticForm {
  torch::Tensor Q;
  torch::Tensor b;
  double c = 0.0;
};

/// A batch's scores and their named parts (for logging: a weighted sum's terms, unweighted; a
/// remote reward's sub-scores), each [B].
struct ScoredBatch {
  torch::Tensor total;
  std::map<std::string, torch::Tensor> terms;
};

class Reward {
 public:
  virtual ~Reward() = default;
  /// Scores endpoints x0 [B, ...] -> [B], float32 on x0's device. Differentiable rewards keep the
  /// graph.
  virtual torch::Tensor score(const torch::Tensor& x0, const Condition& cond = {}) const = 0;
  /// The score with its named parts; the default has none. A reward with parts overrides both
  /// (score() then returns score_terms().total).
  virtual ScoredBatch score_terms(const torch::Tensor& x0, const Condition& cond = {}) const {
    return {score(x0, cond), {}};
  }
  virtual bool differentiable() const = 0;
  /// True if the trainer should score the batch in parts, each while the next part is rolled out:
  /// scoring that waits on another process (a reward server) then hides behind the rollout.
  virtual bool overlap() const { return false; }
  /// The reward as a quadratic form, if it is one.
  virtual std::optional<QuadraticForm> quadratic_form() const { return std::nullopt; }
  /// The spec that rebuilds this reward.
  virtual nlohmann::json spec() const = 0;
};
using RewardPtr = std::shared_ptr<const Reward>;

/// Builds a reward for data of dimension `dim` from its spec.
using RewardFactory = std::function<RewardPtr(const nlohmann::json& spec, int64_t dim)>;
const Registry<RewardFactory>& rewards();
/// The core library's list of built-in rewards (src/rewards/builtin_rewards.cpp); the full library
/// adds the JPEG rewards to it (src/rewards/reward_registry_full.cpp).
void register_builtin_rewards(Registry<RewardFactory>& r);
RewardPtr make_reward(const nlohmann::json& spec, int64_t dim);

/// reward.score(x0, cond) under no_grad, checked: shape [B] and every value finite, else
/// NumericalError naming the reward and the first bad sample.
torch::Tensor score_checked(const Reward& reward, const torch::Tensor& x0,
                            const Condition& cond = {});
/// The same for score_terms: the total and every part checked.
ScoredBatch score_terms_checked(const Reward& reward, const torch::Tensor& x0,
                                const Condition& cond = {});

/// grad_x r(x) at x0 -> [B, ...] (no graph kept). ConfigError for a non-differentiable reward,
/// NumericalError for a non-finite gradient.
torch::Tensor reward_gradient(const Reward& reward, const torch::Tensor& x0,
                              const Condition& cond = {});

}  // namespace ramflow
