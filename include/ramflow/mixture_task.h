#pragma once
// Gaussian-mixture tasks (unconditional): the data law is a GaussianMixture, so tilts by quadratic
// rewards have closed forms. The registered ones (src/tasks/builtin_tasks.cpp):
//   ring     8 equal modes on a circle of radius 4, per-mode std 0.15 (the RAM 2-D tutorial's data)
//   gauss1d  N(1, 0.5^2)            gauss2d  N((1, -1), 0.5^2 I)
//   mixture  any mixture given as JSON params: {"weights", "means", "stds" | "covs"}
#include <string>

#include <nlohmann/json.hpp>

#include "ramflow/gaussian_mixture.h"
#include "ramflow/task.h"

namespace ramflow {

/// A task whose data is `mixture`; `params` is what spec() reports (null for the fixed ones).
TaskPtr make_mixture_task(const std::string& name, GaussianMixture mixture,
                          const nlohmann::json& params);

}  // namespace ramflow
