#pragma once
// Reward signals built from a step's rewards r [B] (B = groups * group_size, group-major order).
// Pure functions, shared by every method that shapes rewards.
#include <string>

#include <torch/types.h>

namespace ramflow {

/// r_i - mean of r over sample i's group.  -> [B]
torch::Tensor group_centered(const torch::Tensor& r, int64_t group_size);

/// Population std of r over each sample's group (scope "group") or over the whole step ("step"),
/// broadcast to [B].
torch::Tensor reward_std(const torch::Tensor& r, int64_t group_size, const std::string& scope);

/// (r - group mean) / (std + eps), std per group or over the step (GRPO's advantage).
torch::Tensor normalized_advantage(const torch::Tensor& r, int64_t group_size,
                                   const std::string& std_scope, double eps);

/// The normalised advantage clamped to [-a_max, a_max], as the released Flow-GRPO, DiffusionNFT and
/// AWM use it.  -> [B]
torch::Tensor clipped_advantage(const torch::Tensor& r, int64_t group_size,
                                const std::string& std_scope, double eps, double a_max);

/// PPO's clipped surrogate per element, max(-A ratio, -A clamp(ratio, 1 - c, 1 + c)) (to be
/// averaged): the policy term of Flow-GRPO, PEPG and AWM.
torch::Tensor clipped_surrogate(const torch::Tensor& ratio, const torch::Tensor& A, double c);

}  // namespace ramflow
