#pragma once
// A task is the data a base model is pretrained on, plus what is known about it exactly.
// Toy tasks are Gaussian mixtures, so their tilted optima have closed forms for quadratic rewards.
//
// Conditions (condition.h). The task owns them: it draws them for rollouts (its training set) and
// for evaluation (its held-out set, fixed), builds the tensors a model reads for each id, gives the
// null condition of classifier-free guidance, and says what each id stands for (ConditionTable:
// text and metadata for rewards, reports and grids). A class-conditional task's condition is its
// label (id = label); an unconditional task's is the empty Condition.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/condition.h"
#include "ramflow/gaussian_mixture.h"
#include "ramflow/registry.h"
#include "ramflow/rng.h"

namespace ramflow {

class Task : public ConditionTable, public std::enable_shared_from_this<Task> {
 public:
  virtual std::string name() const = 0;
  /// The shape of one sample, e.g. {2}; D is its product.
  virtual std::vector<int64_t> sample_shape() const = 0;
  int64_t dim() const;
  /// n data samples, float32 on opts' device.  -> [n, ...sample_shape]. For a conditional task,
  /// `cond` (if not null) receives each sample's condition (on the same device).
  virtual torch::Tensor sample_data(int64_t n, Rng& rng, const torch::TensorOptions& opts = {},
                                    Condition* cond = nullptr) const = 0;
  /// Number of classes of a class-conditional task (the label's range); 0 otherwise.
  virtual int64_t num_classes() const { return 0; }
  /// The distinct conditions (ids 0 .. count - 1): the classes of a class-conditional task.
  int64_t condition_count() const override { return num_classes(); }
  /// The conditions with these ids ([n] int64, kNullId allowed) -> a batch of n on the CPU; the
  /// empty Condition for an unconditional task. The default: a class-conditional batch (label =
  /// id).
  virtual Condition conditions(const torch::Tensor& ids) const;
  /// Draws n training conditions: ids uniform over the conditions. Empty for an unconditional task.
  virtual Condition sample_conditions(int64_t n, Rng& rng) const;
  /// The first n of the fixed evaluation conditions (the held-out set), in turn: sample i asks for
  /// id i mod condition_count(). Empty for an unconditional task.
  virtual Condition evaluation_conditions(int64_t n) const;
  /// Conditions of prompts a person wrote (`ramflow sample --prompts`): a batch of n on the CPU
  /// whose texts are the prompts. ConfigError for a task that takes no text prompts (the default)
  /// or naming a prompt the task cannot take.
  virtual Condition prompt_conditions(const std::vector<std::string>& prompts) const;
  /// The null (negative) condition of classifier-free guidance, one row; empty for an unconditional
  /// task.
  Condition null_condition() const;
  /// A person's name for condition `id` (a class name): "class k" unless the task knows better.
  std::string condition_text(int64_t id) const override;
  /// Held-out data for evaluation (the test split), with conditions for a conditional task; nullopt
  /// when the task has none (mixtures: fresh samples serve).
  struct Split {
    torch::Tensor x;  // [N, ...sample_shape] float32, CPU
    Condition cond;   // N conditions, or empty
  };
  virtual std::optional<Split> test_split() const { return std::nullopt; }
  /// The whole training split in file order (for training a classifier); throws ConfigError for a
  /// task that has none (mixtures are distributions, not datasets).
  virtual Split training_split() const;
  /// The data law as a Gaussian mixture, if it is one (enables closed-form tilts and mode masses).
  virtual const GaussianMixture* mixture() const { return nullptr; }
  /// The default velocity-field spec for this task.
  virtual nlohmann::json default_model() const = 0;
  /// {"task": name, "params": ...} that rebuilds the task.
  virtual nlohmann::json spec() const = 0;

 protected:
  /// This task as the table of its conditions' ids (null if it is not held by a shared_ptr).
  std::shared_ptr<const ConditionTable> table() const { return weak_from_this().lock(); }
};
using TaskPtr = std::shared_ptr<const Task>;

/// Builds a task from its name and its parameters (JSON; null when the task takes none).
using TaskFactory = std::function<TaskPtr(const nlohmann::json& params)>;
struct TaskInfo {
  TaskFactory make;
  /// The task's own defaults for job keys (pretraining length, reward, rollout sizes, ...), and
  /// under "methods": {method: {...}} its settings for a method (a learning rate tuned on this
  /// task): they win over the method's own preset, keys the user sets win over both, and a key a
  /// job lacks is skipped.
  nlohmann::json preset = nlohmann::json::object();
  /// Images [C, H, W] with a test split: what train-classifier trains on (its --task choices).
  bool images = false;
};
/// Every registered task: the core library's (register_builtin_tasks), then, in the full library,
/// those that need its dependencies (FreeType: `words`), src/tasks/task_registry_{core,full}.cpp.
const Registry<TaskInfo>& tasks();
/// Adds the core library's tasks to `r` (src/tasks/builtin_tasks.cpp).
void register_builtin_tasks(Registry<TaskInfo>& r);
TaskPtr make_task(const std::string& name, const nlohmann::json& params = nullptr);

}  // namespace ramflow
