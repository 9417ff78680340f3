// Gaussian-mixture toy tasks:
//   ring     8 equal modes on a circle of radius 4, per-mode std 0.15 (the RAM 2-D tutorial's data)
//   gauss1d  N(1, 0.5^2)            gauss2d  N((1, -1), 0.5^2 I)
//   mixture  any mixture given as JSON params: {"weights", "means", "stds" | "covs"}
#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/task.h"

namespace ramflow {
namespace {

class MixtureTask : public Task {
 public:
  MixtureTask(std::string name, GaussianMixture mixture, nlohmann::json params)
      : name_(std::move(name)), mixture_(std::move(mixture)), params_(std::move(params)) {
    mixture_.validate();
  }
  std::string name() const override { return name_; }
  std::vector<int64_t> sample_shape() const override { return {mixture_.dim()}; }
  torch::Tensor sample_data(int64_t n, Rng& rng, const torch::TensorOptions& opts) const override {
    return mixture_.sample(n, rng, opts);
  }
  const GaussianMixture* mixture() const override { return &mixture_; }
  nlohmann::json default_model() const override {
    return MLPVelocityOptions(mixture_.dim()).to_json();
  }
  nlohmann::json spec() const override { return {{"task", name_}, {"params", params_}}; }

 private:
  std::string name_;
  GaussianMixture mixture_;
  nlohmann::json params_;
};

TaskFactory fixed(std::string name, GaussianMixture (*make)()) {
  return [name, make](const nlohmann::json& params) -> TaskPtr {
    if (!params.is_null())
      throw ConfigError("task '" + name + "' takes no parameters (use task 'mixture' for a custom one)");
    return std::make_shared<MixtureTask>(name, make(), nullptr);
  };
}

GaussianMixture ring() { return GaussianMixture::ring(8, 4.0, 0.15); }
GaussianMixture gauss1d() { return GaussianMixture::single({1.0}, 0.5); }
GaussianMixture gauss2d() { return GaussianMixture::single({1.0, -1.0}, 0.5); }

TaskPtr custom_mixture(const nlohmann::json& params) {
  if (params.is_null())
    throw ConfigError("task 'mixture' needs its mixture: set 'mixture' to "
                      "{\"weights\": [...], \"means\": [[...]], \"stds\": [...]}");
  return std::make_shared<MixtureTask>("mixture", GaussianMixture::from_json(params, "task 'mixture'"),
                                       params);
}

void register_builtin_tasks(Registry<TaskFactory>& r) {
  r.add("ring", fixed("ring", ring), "8-mode Gaussian ring, radius 4, per-mode std 0.15 (2-D)");
  r.add("gauss1d", fixed("gauss1d", gauss1d), "single Gaussian N(1, 0.5^2) (1-D)");
  r.add("gauss2d", fixed("gauss2d", gauss2d), "single Gaussian N((1,-1), 0.5^2 I) (2-D)");
  r.add("mixture", custom_mixture, "Gaussian mixture from the 'mixture' setting");
}

}  // namespace

int64_t Task::dim() const {
  int64_t d = 1;
  for (auto s : sample_shape()) d *= s;
  return d;
}

const Registry<TaskFactory>& tasks() {
  static const Registry<TaskFactory> registry = [] {
    Registry<TaskFactory> r("task");
    register_builtin_tasks(r);
    return r;
  }();
  return registry;
}

TaskPtr make_task(const std::string& name, const nlohmann::json& params) {
  return tasks().get(name)(params);
}

}  // namespace ramflow
