#pragma once
// The exact KL-optimal target p*(x) ∝ p_ref(x) exp(m r(x)), m = 1 / lambda.
//   * closed form, for Gaussian-mixture p_ref and a quadratic reward r = -1/2 x^T Q x + b^T x + c:
//       each component N(mu_k, Sigma_k) becomes N(mu'_k, Sigma'_k) with
//         Sigma'_k = (Sigma_k^-1 + m Q)^-1,   mu'_k = Sigma'_k (Sigma_k^-1 mu_k + m b)
//       and its weight is multiplied by the component's normaliser
//         Z_k = ∫ N(x; mu_k, Sigma_k) exp(m r(x)) dx
//             ∝ sqrt(|Sigma'_k| / |Sigma_k|) exp(1/2 mu'_k^T Sigma'_k^-1 mu'_k - 1/2 mu_k^T
//             Sigma_k^-1 mu_k).
//       (linear reward, Q = 0: mean shift Sigma_k m b, weight factor exp(m b.mu_k + 1/2 m^2 b^T
//       Sigma_k b))
//   * for any reward, by self-normalised importance resampling of a pool of p_ref samples with
//   weights
//     w_i ∝ exp(m r_i); it converges to p* as the pool grows, and its effective sample size
//     ESS = 1 / sum_i w_i^2 says how well.
#include <torch/types.h>

#include "ramflow/gaussian_mixture.h"
#include "ramflow/reward.h"

namespace ramflow {

/// The closed-form tilt. Throws ConfigError if some Sigma_k^-1 + m Q is not positive definite (the
/// tilted density would not be normalisable).
GaussianMixture tilt_mixture(const GaussianMixture& mixture, const QuadraticForm& reward, double m);

struct WeightedSamples {
  torch::Tensor x;  // [N, D] float32 (CPU)
  torch::Tensor w;  // [N] float64, sums to 1
  double ess = 0;   // 1 / sum w^2
};

/// Self-normalised importance weights w_i ∝ exp(m r_i) of a pool.  pool: [N, ...], r: [N].
WeightedSamples importance_tilt(const torch::Tensor& pool, const torch::Tensor& r, double m);

}  // namespace ramflow
