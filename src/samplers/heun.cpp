// Heun ODE step (explicit trapezoidal rule), second order; two network evaluations per step.
#include <torch/torch.h>

#include "ramflow/sampler.h"

namespace ramflow {

torch::Tensor heun_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                        const torch::Tensor& /*noise*/) {
  const double dt = t_next - t;
  auto v0 = v(x, torch::full({x.size(0)}, t, x.options()));
  auto x_e = x.add(v0, dt);  // Euler predictor
  auto v1 = v(x_e, torch::full({x.size(0)}, t_next, x.options()));
  return x.add(v0 + v1, 0.5 * dt);  // trapezoidal corrector
}

}  // namespace ramflow
