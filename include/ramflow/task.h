#pragma once
// A task is the data a base model is pretrained on, plus what is known about it exactly.
// Toy tasks are Gaussian mixtures, so their tilted optima have closed forms for quadratic rewards.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "ramflow/gaussian_mixture.h"
#include "ramflow/registry.h"
#include "ramflow/rng.h"

namespace ramflow {

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  /// The shape of one sample, e.g. {2}; D is its product.
  virtual std::vector<int64_t> sample_shape() const = 0;
  int64_t dim() const;
  /// n data samples, float32 on opts' device.  -> [n, ...sample_shape]
  virtual torch::Tensor sample_data(int64_t n, Rng& rng, const torch::TensorOptions& opts = {}) const = 0;
  /// The data law as a Gaussian mixture, if it is one (enables closed-form tilts and mode masses).
  virtual const GaussianMixture* mixture() const { return nullptr; }
  /// The default velocity-field spec for this task.
  virtual nlohmann::json default_model() const = 0;
  /// {"task": name, "params": ...} that rebuilds the task.
  virtual nlohmann::json spec() const = 0;
};
using TaskPtr = std::shared_ptr<const Task>;

/// Builds a task from its name and its parameters (JSON; null when the task takes none).
using TaskFactory = std::function<TaskPtr(const nlohmann::json& params)>;
const Registry<TaskFactory>& tasks();
TaskPtr make_task(const std::string& name, const nlohmann::json& params = nullptr);

}  // namespace ramflow
