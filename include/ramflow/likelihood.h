#pragma once
// Exact model log-likelihoods by the instantaneous change of variables along the probability-flow
// ODE (Chen et al. 2018, "Neural ODEs"; Grathwohl et al. 2019, FFJORD), in ramflow's convention.
//
// Along dx/dt = v(x, t) the density obeys d/dt log p_t(x_t) = -div v(x_t, t) (the continuity
// equation), so integrating from the sample x_0 = x0 at t = 0 up to t = 1, where p_1 = N(0, I):
//   log p_0(x0) = log N(x_1; 0, I) + int_0^1 div v(x_t, t) dt.
// The augmented state (x, int div v) is integrated with Heun's method (second order) on a uniform
// grid. The divergence is exact (D vector-Jacobian products, one per coordinate) up to
// `exact_max_dim` coordinates, and Hutchinson's unbiased estimate z^T (dv/dx) z with one Gaussian
// probe z per sample (fixed along the path, as in FFJORD) above. p_0 is the law of the ODE flow
// itself: the density that an accurate ODE sampler's endpoints follow.
#include <cmath>
#include <optional>
#include <string>

#include <torch/types.h>

#include "ramflow/rng.h"
#include "ramflow/rows.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

struct LikelihoodOptions {
  TORCH_ARG(int64_t, steps) = 100;              // Heun steps on [0, 1]
  TORCH_ARG(std::string, divergence) = "auto";  // exact | hutchinson | auto
  TORCH_ARG(int64_t, exact_max_dim) = 16;       // auto: exact up to this many coordinates
};

/// log p_model(x0) for each row of x0 [B, ...] (with their conditions, B rows or empty): -> [B]
/// float64. `rng` draws the Hutchinson probes (it may be null when the divergence is exact), for
/// `rows` of a batch that x0 holds (rows.h). No parameter gradients are kept.
torch::Tensor ode_log_likelihood(VelocityFieldImpl& model, const torch::Tensor& x0,
                                 const Condition& cond, const LikelihoodOptions& options = {},
                                 Rng* rng = nullptr, const Rows& rows = {});
/// log p_theta(x) - log p_ref(x) for each row of x [N, ...] (samples of p_theta): -> [N] float64,
/// the terms of kl_on_samples; `rows` as for ode_log_likelihood.
torch::Tensor log_ratio_on_samples(VelocityFieldImpl& model, VelocityFieldImpl& ref,
                                   const torch::Tensor& x, const Condition& cond,
                                   const LikelihoodOptions& options = {}, Rng* rng = nullptr,
                                   const Rows& rows = {});

/// KL(p_theta || p_ref) estimated on samples x ~ p_theta [N, ...]: mean of log p_theta(x) - log
/// p_ref(x), with its standard error.
struct KLEstimate {
  double kl = 0, se = 0;
  /// Whether the estimate tells anything: finite, not negative (a KL is >= 0: an estimate below
  /// zero by more than two standard errors is the likelihood ODE failing, from too few steps or
  /// Hutchinson's probes in high dimension; one within them is noise around a small KL), and a
  /// standard error no larger than the value (12.1 +- 40.1 says nothing). The base against itself,
  /// 0 +- 0, is reliable.
  bool reliable() const { return std::isfinite(kl) && std::isfinite(se) && kl >= 0 && se <= kl; }
  /// As tables show it: "2.052 ± 0.082"; "0" for the base itself; an unreliable estimate is no
  /// number: "n/a (negative: the estimator failed)" or "n/a (too noisy: ± 40.104)"; without a
  /// standard error (NaN: an older run's line) the value alone.
  std::string text() const;
  /// The mean of `terms` ([N] float64) and its standard error.
  static KLEstimate of(const torch::Tensor& terms);
};
KLEstimate kl_on_samples(VelocityFieldImpl& model, VelocityFieldImpl& ref, const torch::Tensor& x,
                         const Condition& cond, const LikelihoodOptions& options = {},
                         Rng* rng = nullptr);

}  // namespace ramflow
