#pragma once
// Gaussian mixtures: toy data with exact answers. Everything is held in float64; samples come out
// float32.
//   p(x) = sum_k w_k N(x; mu_k, Sigma_k)
// Under ramflow's noising x_t = (1 - t) x0 + t eps, each component stays Gaussian:
//   x_t | k ~ N(a mu_k, S_k),   a = 1 - t,   S_k = a^2 Sigma_k + t^2 I
// so the exact flow-matching velocity v(x, t) = E[eps - x0 | x_t = x] has a closed form
// (mixture_velocity).
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/rng.h"

namespace ramflow {

struct GaussianMixture {
  torch::Tensor weights;  // [M], float64, sums to 1
  torch::Tensor means;    // [M, D], float64
  torch::Tensor covs;     // [M, D, D], float64, symmetric positive definite

  int64_t dim() const { return means.size(1); }
  int64_t modes() const { return means.size(0); }

  /// Throws ConfigError if shapes disagree, weights are not a distribution or a covariance is not
  /// SPD.
  void validate() const;
  /// n samples, float32 on `opts`' device.  -> [n, D]
  torch::Tensor sample(int64_t n, Rng& rng, const torch::TensorOptions& opts = {}) const;
  /// log p(x) in float64.  x: [N, D] -> [N]
  torch::Tensor log_prob(const torch::Tensor& x) const;

  /// {"weights": [...], "means": [[...]], "covs": [[[...]]]}
  nlohmann::json to_json() const;
  /// Accepts "weights" (optional: uniform), "means", and either "stds" (one isotropic std per mode,
  /// or a single std for all) or "covs" (full matrices). Unknown fields throw.
  static GaussianMixture from_json(const nlohmann::json& spec, const std::string& what);

  /// `modes` equal-weight isotropic components on a circle: mode i at angle 2 pi i / modes.
  static GaussianMixture ring(int64_t modes = 8, double radius = 4.0, double std = 0.15);
  /// One isotropic Gaussian N(mean, std^2 I).
  static GaussianMixture single(const std::vector<double>& mean, double std);
};

/// The exact velocity of the mixture's flow-matching path, per component k:
///   v_k(x, t) = (t I - a Sigma_k) S_k^-1 (x - a mu_k) - mu_k,
/// mixed by the posterior pi_k(x) ∝ w_k N(x; a mu_k, S_k).   x: [B, D], t: [B] -> [B, D] (x's
/// dtype)
torch::Tensor mixture_velocity(const GaussianMixture& mixture, const torch::Tensor& x,
                               const torch::Tensor& t);

}  // namespace ramflow
