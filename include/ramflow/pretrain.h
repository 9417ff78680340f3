#pragma once
// Flow-matching pretraining:  L_FM(theta) = E_{t, x0, eps} || v_theta(x_t, t) - (eps - x0) ||^2,
// x_t = (1 - t) x0 + t eps. Its minimiser is v(x, t) = E[eps - x0 | x_t = x].
#include <functional>

#include "ramflow/rng.h"
#include "ramflow/time.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

struct PretrainOptions {
  TORCH_ARG(int64_t, steps) = 5000;
  TORCH_ARG(int64_t, batch) = 256;
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(TimeDistribution, time) = TimeDistribution();
};

struct PretrainRecord {
  int64_t step = 0;    // 1-based
  double loss = 0;
  double seconds = 0;  // cumulative
};

/// Draws n data samples x0 [n, ...] (and, for conditional data, writes labels [n] into *cond).
using DataSampler = std::function<torch::Tensor(int64_t n, Rng& rng, torch::Tensor* cond)>;

/// Trains `model` in place with Adam. `on_step` (optional) is called after every step.
void pretrain_flow_matching(VelocityFieldImpl& model, const DataSampler& data,
                            const PretrainOptions& options,
                            const std::function<void(const PretrainRecord&)>& on_step = {});

/// The flow-matching loss of `model` on a batch x0 (with labels cond or undefined).
torch::Tensor flow_matching_loss(VelocityFieldImpl& model, const torch::Tensor& x0,
                                 const torch::Tensor& cond, const TimeDistribution& time, Rng& rng);

}  // namespace ramflow
