#pragma once
// Training-time distributions p(t) and sampling grids, in ramflow's convention (t = 0 data, t = 1
// noise).
#include <string>
#include <vector>

#include <torch/types.h>

#include "ramflow/rng.h"

namespace ramflow {

/// The distribution of t in a flow-matching loss.
///   uniform:       t ~ U(0, 1)
///   power:         p(t) ∝ t^alpha on (0, 1)  ->  t = u^(1 / (alpha + 1)) by inverting the CDF
///   t^(alpha+1)
///                  (RAM's released configs use alpha = 1: more mass near the noise end)
///   logit_normal:  t = sigmoid(mean + std * z),  z ~ N(0, 1)   (SD3's choice for pretraining)
struct TimeDistribution {
  std::string kind = "uniform";
  double alpha = 1.0;
  double mean = 0.0;
  double std = 1.0;

  /// Throws ConfigError for an unknown kind or a bad parameter.
  void validate() const;
  /// n draws in (0, 1), drawn in float32 on the CPU, then given `opts`' dtype and device.  -> [n]
  torch::Tensor sample(int64_t n, Rng& rng, const torch::TensorOptions& opts = {}) const;
  /// The density p(t) (for tests and plots).
  double density(double t) const;
};

/// t' = s t / (1 + (s - 1) t): the SD3 time shift. s > 1 spends more steps near the noise end.
double shift_time(double t, double shift);

/// The sampling grid t_0 = 1 > t_1 > ... > t_steps = 0: uniform in t, then shifted by `shift`.
std::vector<double> time_grid(int64_t steps, double shift = 1.0);

/// diffusers' FlowMatchEulerDiscreteScheduler grid after set_timesteps(steps), without dynamic
/// shifting (SD3, SD3.5): with T training steps, the scheduler's sigmas run from shift_time(1) = 1
/// down to sigma_min = shift_time(1 / T); set_timesteps spaces `steps` points linearly between
/// them and shifts them *again* (diffusers shifts twice), then appends 0:
///   t_k = shift_time(1 + (sigma_min - 1) k / (steps - 1)),  k = 0..steps-1;  t_steps = 0
/// (shift 3, 10 steps: 1, 0.960, 0.913, 0.858, 0.790, 0.707, 0.602, 0.465, 0.278, 0.00893, 0).
std::vector<double> diffusers_grid(int64_t steps, double shift, int64_t train_steps = 1000);

}  // namespace ramflow
