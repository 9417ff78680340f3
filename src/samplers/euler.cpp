// Euler ODE step, first order. In ramflow's convention dt = t_next - t < 0 during generation.
#include <torch/torch.h>

#include "ramflow/sampler.h"

namespace ramflow {

torch::Tensor euler_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                         const torch::Tensor& /*noise*/) {
  auto tb = torch::full({x.size(0)}, t, x.options());
  return x.add(v(x, tb), t_next - t);  // x + dt v, one operator
}

}  // namespace ramflow
