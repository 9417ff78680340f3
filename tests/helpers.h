#pragma once
// Helpers shared by the test files.
#include <nlohmann/json.hpp>

#include "ramflow/mlp_velocity.h"
#include "ramflow/pretrain.h"
#include "ramflow/sampler.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

namespace ramflow::testing {

/// A model of `spec` pretrained by flow matching on `task` (batch 256, lr 1e-3, seed 0, init seed 0).
inline VelocityFieldPtr pretrained(const Task& task, const nlohmann::json& spec, int64_t steps) {
  auto model = make_velocity_field(spec, /*init_seed=*/0);
  pretrain_flow_matching(*model, [&](int64_t n, Rng& rng, torch::Tensor*) { return task.sample_data(n, rng); },
                         PretrainOptions().steps(steps).batch(256).lr(1e-3).seed(0));
  return model;
}

/// The gauss1d task's base model (N(1, 0.5^2), an MLP pretrained for 2000 steps), with fixed noise x1
/// [20000, 1] and the mean and variance of its 50-step Euler endpoints from that noise.
struct GaussianBase {
  VelocityFieldPtr model;
  torch::Tensor x1;
  double mean = 0, var = 0;
};
inline GaussianBase gaussian_base() {
  GaussianBase g;
  g.model = pretrained(*make_task("gauss1d"), MLPVelocityOptions(1).hidden(64).to_json(), 2000);
  Rng rng(5);
  g.x1 = rng.randn({20000, 1});
  auto x0 = sample(*g.model, g.x1, {}, SampleOptions().steps(50)).x0;
  g.mean = x0.mean().item<double>();
  g.var = x0.var().item<double>();
  return g;
}

}  // namespace ramflow::testing
