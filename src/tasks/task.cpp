// What every task shares: its conditions (see include/ramflow/task.h).
#include "ramflow/task.h"

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

int64_t Task::dim() const {
  int64_t d = 1;
  for (auto s : sample_shape()) d *= s;
  return d;
}

Condition Task::conditions(const torch::Tensor& ids) const {
  if (condition_count() == 0) return {};
  return Condition::classes(ids.to(torch::kCPU, torch::kLong), table());
}

Condition Task::sample_conditions(int64_t n, Rng& rng) const {
  if (condition_count() == 0) return {};
  return conditions(rng.uniform_int(condition_count(), {n}));  // [n] uniform ids
}

Condition Task::prompt_conditions(const std::vector<std::string>&) const {
  throw ConfigError("task '" + name() + "' takes no text prompts");
}

Condition Task::evaluation_conditions(int64_t n) const {
  if (condition_count() == 0) return {};
  return conditions(torch::arange(n, torch::kLong).remainder(condition_count()));  // [n]: i mod K
}

Condition Task::null_condition() const {
  if (condition_count() == 0) return {};
  return conditions(torch::full({1}, kNullId, torch::kLong));
}

std::string Task::condition_text(int64_t id) const {
  return id == kNullId ? std::string() : "class " + std::to_string(id);
}

Task::Split Task::training_split() const {
  throw ConfigError("task '" + name() +
                    "' has no training split (it is a distribution, not a dataset)");
}

}  // namespace ramflow
