// Exact tilts (see include/ramflow/tilt.h for the formulas).
#include "ramflow/tilt.h"

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

GaussianMixture tilt_mixture(const GaussianMixture& g, const QuadraticForm& f, double m) {
  auto Q = (m * f.Q).to(torch::kDouble).unsqueeze(0);  // [1, D, D]
  auto b = (m * f.b).to(torch::kDouble);               // [D]
  auto prec = torch::linalg_inv(g.covs);               // [M, D, D]  Sigma_k^-1
  auto prec_t = prec + Q;                              // [M, D, D]  Sigma'_k^-1
  if ((torch::linalg_eigvalsh(prec_t, "L") <= 0).any().item<bool>())
    throw ConfigError(
        "exact tilt: Sigma^-1 + m Q is not positive definite for some mode; the tilted "
        "density exp(m r) p_ref is not normalisable (lower the multiplier or the curvature)");
  auto cov_t = torch::linalg_inv(prec_t);                                 // [M, D, D]  Sigma'_k
  cov_t = 0.5 * (cov_t + cov_t.transpose(1, 2));                          // symmetrise rounding
  auto rhs = torch::matmul(prec, g.means.unsqueeze(-1)).squeeze(-1) + b;  // [M, D]
  auto mean_t = torch::matmul(cov_t, rhs.unsqueeze(-1)).squeeze(-1);      // [M, D]
  auto quad_t = (mean_t * torch::matmul(prec_t, mean_t.unsqueeze(-1)).squeeze(-1)).sum(-1);  // [M]
  auto quad_0 = (g.means * torch::matmul(prec, g.means.unsqueeze(-1)).squeeze(-1)).sum(-1);  // [M]
  auto logdet_t = torch::linalg_slogdet(cov_t);
  auto logdet_0 = torch::linalg_slogdet(g.covs);
  auto log_z = 0.5 * (std::get<1>(logdet_t) - std::get<1>(logdet_0)) + 0.5 * (quad_t - quad_0);
  GaussianMixture out;
  out.weights = torch::softmax(torch::log(g.weights) + log_z, 0);
  out.means = mean_t;
  out.covs = cov_t;
  return out;
}

WeightedSamples importance_tilt(const torch::Tensor& pool, const torch::Tensor& r, double m) {
  TORCH_CHECK(r.dim() == 1 && r.size(0) == pool.size(0), "importance_tilt: rewards have shape ",
              r.sizes(), " for a pool of ", pool.size(0));
  WeightedSamples out;
  out.x = pool.detach().to(torch::kCPU, torch::kFloat).reshape({pool.size(0), -1});
  out.w =
      torch::softmax(m * r.detach().to(torch::kCPU, torch::kDouble), 0);  // exp(m r) / sum, stably
  out.ess = 1.0 / out.w.pow(2).sum().item<double>();
  return out;
}

}  // namespace ramflow
