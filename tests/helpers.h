#pragma once
// Helpers shared by the test files.
#include <nlohmann/json.hpp>

#include "ramflow/pretrain.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

namespace ramflow::testing {

/// A model of `spec` pretrained by flow matching on `task` (batch 256, lr 1e-3, seed 0).
inline VelocityFieldPtr pretrained(const Task& task, const nlohmann::json& spec, int64_t steps) {
  auto model = make_velocity_field(spec);
  pretrain_flow_matching(*model, [&](int64_t n, Rng& rng, torch::Tensor*) { return task.sample_data(n, rng); },
                         PretrainOptions().steps(steps).batch(256).lr(1e-3).seed(0));
  return model;
}

}  // namespace ramflow::testing
