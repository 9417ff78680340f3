// PyTorch's default layer initialisation from an Rng (see include/ramflow/init.h).
#include "ramflow/init.h"

#include <cmath>

#include <torch/torch.h>

namespace ramflow {

void init_layer_uniform(torch::Tensor& weight, torch::Tensor& bias, Rng& rng) {
  torch::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(weight[0].numel()));  // 1 / sqrt(fan_in)
  weight.copy_((rng.rand(weight.sizes()) * 2 - 1) * bound);
  if (bias.defined()) bias.copy_((rng.rand(bias.sizes()) * 2 - 1) * bound);
}

}  // namespace ramflow
