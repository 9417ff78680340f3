#pragma once
// ExactMixtureVelocity: the closed-form velocity of Gaussian-mixture data (no parameters). A
// perfect "pretrained" model for tests and for checking samplers; registered as model
// "exact_mixture".
#include "ramflow/gaussian_mixture.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

class ExactMixtureVelocityImpl : public VelocityFieldImpl {
 public:
  explicit ExactMixtureVelocityImpl(GaussianMixture mixture);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  /// {"type": "exact_mixture", "mixture": {...}}
  nlohmann::json spec() const override;
  const GaussianMixture& mixture() const { return mixture_; }

 private:
  GaussianMixture mixture_;
};
TORCH_MODULE(ExactMixtureVelocity);

}  // namespace ramflow
