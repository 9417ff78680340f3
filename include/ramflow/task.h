#pragma once
// A task is the data a base model is pretrained on, plus what is known about it exactly.
// Toy tasks are Gaussian mixtures, so their tilted optima have closed forms for quadratic rewards.
//
// Conditions. A conditional task (num_classes() > 0) pairs every sample with a condition: today a class
// label, int64 in [0, num_classes); the label kNullLabel (-1) is the null condition of classifier-free
// guidance (guidance.h). The condition travels with each sample through rollouts, rewards, losses and
// evaluation as a tensor whose first dimension is the batch ([B] labels now; [B, ...] prompt embeddings
// for a text-conditioned task later). Unconditional tasks pass an undefined tensor.
#include <functional>
#include <memory>
#include <optional>
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
  /// n data samples, float32 on opts' device.  -> [n, ...sample_shape]. For a conditional task, `cond`
  /// (if not null) receives each sample's label ([n] int64, on the same device).
  virtual torch::Tensor sample_data(int64_t n, Rng& rng, const torch::TensorOptions& opts = {},
                                    torch::Tensor* cond = nullptr) const = 0;
  /// Number of classes of a conditional task; 0 for an unconditional one.
  virtual int64_t num_classes() const { return 0; }
  /// Draws n conditions for rollouts and evaluation: labels uniform over the classes -> [n] int64 (CPU);
  /// undefined for an unconditional task.
  virtual torch::Tensor sample_conditions(int64_t n, Rng& rng) const;
  /// Held-out data for evaluation (the test split), with labels for a conditional task; nullopt when the
  /// task has none (mixtures: fresh samples serve).
  struct Split {
    torch::Tensor x;     // [N, ...sample_shape] float32, CPU
    torch::Tensor cond;  // [N] int64, or undefined
  };
  virtual std::optional<Split> test_split() const { return std::nullopt; }
  /// The whole training split in file order (for training a classifier); throws ConfigError for a task
  /// that has none (mixtures are distributions, not datasets).
  virtual Split training_split() const;
  /// The name of class k (for reports): "class k" unless the task knows better.
  virtual std::string class_name(int64_t k) const;
  /// The data law as a Gaussian mixture, if it is one (enables closed-form tilts and mode masses).
  virtual const GaussianMixture* mixture() const { return nullptr; }
  /// The default velocity-field spec for this task.
  virtual nlohmann::json default_model() const = 0;
  /// {"task": name, "params": ...} that rebuilds the task.
  virtual nlohmann::json spec() const = 0;
};
using TaskPtr = std::shared_ptr<const Task>;

/// The null condition: a class-conditional model given this label predicts the unconditional velocity.
inline constexpr int64_t kNullLabel = -1;

/// Builds a task from its name and its parameters (JSON; null when the task takes none).
using TaskFactory = std::function<TaskPtr(const nlohmann::json& params)>;
struct TaskInfo {
  TaskFactory make;
  /// The task's own defaults for job keys (pretraining length, reward, rollout sizes, ...): applied by
  /// the jobs before a method's preset, so keys the user sets win, and a key a job lacks is skipped.
  nlohmann::json preset = nlohmann::json::object();
};
const Registry<TaskInfo>& tasks();
TaskPtr make_task(const std::string& name, const nlohmann::json& params = nullptr);

}  // namespace ramflow
