// ExactMixtureVelocity (see include/ramflow/exact_mixture_velocity.h).
#include "ramflow/exact_mixture_velocity.h"

#include <torch/torch.h>

namespace ramflow {

ExactMixtureVelocityImpl::ExactMixtureVelocityImpl(GaussianMixture mixture)
    : mixture_(std::move(mixture)) {
  mixture_.validate();
}

torch::Tensor ExactMixtureVelocityImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                                const Condition& /*cond*/) {
  const int64_t B = x.size(0);
  return mixture_velocity(mixture_, x.reshape({B, -1}), t).reshape(x.sizes()).to(x.device());
}

nlohmann::json ExactMixtureVelocityImpl::spec() const {
  return {{"type", "exact_mixture"}, {"mixture", mixture_.to_json()}};
}

}  // namespace ramflow
