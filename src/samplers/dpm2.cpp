// DPM-Solver-2 (singlestep, second order, data prediction: DPM-Solver++(2S) with r = 1/2) for the
// flow convention x_t = (1 - t) x0 + t eps, the deterministic sampler of DiffusionNFT's released
// code (solver "dpm2"). Lu et al., "DPM-Solver++", arXiv 2211.01095, Algorithm 1 (2S), in flow
// variables:
//   alpha_t = 1 - t,   sigma_t = t,   lambda_t = log(alpha_t / sigma_t),   D(x, t) = x - t v(x, t)
// (D is the model's prediction of x0). The exact solution from t to t' < t is
//   x_t' = (sigma_t' / sigma_t) x_t + sigma_t' ∫_{lambda_t}^{lambda_t'} e^lambda D dlambda,
// and with h = lambda_t' - lambda_t the exponential integrator with D frozen (DDIM) reads
//   x_t' = (sigma_t' / sigma_t) x_t + alpha_t' (1 - e^{-h}) D.
// DPM-Solver-2 takes that step to the midpoint s of [lambda_t, lambda_t'] with D(x_t, t), then the
// full step with D(u, s): two network evaluations per step, error O(h^3) per step. At t = 1 (alpha
// = 0, lambda = -inf) the midpoint in lambda does not exist; the step then uses the midpoint in t,
// and the full step's D is the mean of the two predictions (the r -> 1 limit of DPM-Solver++(2S)'s
// combination (1 - 1/(2r)) D_t + (1/(2r)) D_s).
#include <cmath>

#include <torch/torch.h>

#include "ramflow/sampler.h"

namespace ramflow {

namespace {

// D(x, t) = x - t v(x, t): the model's x0 prediction.
torch::Tensor denoised(const VelocityFn& v, const torch::Tensor& x, double t) {
  return x - t * v(x, torch::full({x.size(0)}, t, x.options()));
}

// The DDIM step from (x, t) to `to` with the x0 prediction D: x_to = (to / t) x + (1 - to)(1 -
// e^{-h}) D, where e^{-h} = (alpha_t sigma_to) / (sigma_t alpha_to).
torch::Tensor ddim(const torch::Tensor& x, const torch::Tensor& D, double t, double to) {
  const double e_minus_h = ((1 - t) * to) / (t * (1 - to));
  return (to / t) * x + ((1 - to) * (1 - e_minus_h)) * D;
}

}  // namespace

torch::Tensor dpm2_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                        const torch::Tensor& /*noise*/) {
  if (t_next <= 0) {
    // lambda_0 = +inf: the last step lands on x0 itself, D at the midpoint in t (second order in
    // t).
    const double s = 0.5 * t;
    const auto u = ddim(x, denoised(v, x, t), t, s);
    return denoised(v, u, s);
  }
  const auto D_t = denoised(v, x, t);
  if (t >= 1) {
    const double s = 0.5 * (t + t_next);
    const auto u = s * x + (1 - s) * D_t;  // DDIM from pure noise: x_s = s eps + (1 - s) D
    return t_next * x + (1 - t_next) * (0.5 * (D_t + denoised(v, u, s)));
  }
  const double lambda = std::log((1 - t) / t), lambda_next = std::log((1 - t_next) / t_next);
  const double lambda_s = 0.5 * (lambda + lambda_next);
  const double s = 1 / (1 + std::exp(lambda_s));  // t at lambda_s: (1 - s) / s = e^lambda_s
  const auto u = ddim(x, D_t, t, s);
  return ddim(x, denoised(v, u, s), t, t_next);
}

}  // namespace ramflow
