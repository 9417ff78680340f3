// Gaussian-mixture tasks (see include/ramflow/mixture_task.h).
#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/mixture_task.h"
#include "ramflow/mlp_velocity.h"

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
  torch::Tensor sample_data(int64_t n, Rng& rng, const torch::TensorOptions& opts,
                            Condition* /*cond*/) const override {
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

}  // namespace

TaskPtr make_mixture_task(const std::string& name, GaussianMixture mixture,
                          const nlohmann::json& params) {
  return std::make_shared<MixtureTask>(name, std::move(mixture), params);
}

}  // namespace ramflow
