#pragma once
// The evidence lower bound (ELBO) of a flow-matching model's log-likelihood, from the final sample
// alone: the likelihood estimator of the ELBO policy gradient (elbo_pg.h) and of AWM (awm.h).
//
// Derivation (continuous-time variational bound, Kingma et al. 2021 "Variational Diffusion Models",
// written in ramflow's convention t = 0 data, t = 1 noise, x_t = (1 - t) x0 + t eps, u = eps - x0):
// the signal-to-noise ratio is SNR(t) = (1 - t)^2 / t^2, and the diffusion term of the bound,
// -1/2 int SNR'(t) |x0 - x0_hat|^2 dt with x0_hat - x0 = t (u - v), becomes
//   L_diff(x0) = int_delta^1 w(t) E_eps |v(x_t, t) - u|^2 dt,     w(t) = (1 - t) / t,
// with the squared norm summed over coordinates. The prior term vanishes (x_1 = eps exactly), and
// on [0, delta] a Gaussian decoder N(x0; x_delta - delta v(x_delta, delta), (delta / (1 - delta))^2
// I) closes the bound:
//   ELBO(x0) = E_eps[log N(x0; x0_hat_delta, sd^2 I)] - L_diff(x0) <= log p_model(x0),
//   log N(...) = -D/2 log(2 pi sd^2) - 1/2 (1 - delta)^2 |v(x_delta, delta) - u|^2.
// p_model is the law of the stochastic (ancestral) sampler with the plug-in score; when v is the
// exact velocity of some endpoint law, that law is p_model, the ODE's law too, and the bound is
// tight as delta -> 0 (the posterior of the path given x0 is then the forward noising itself).
// Tested on a Gaussian: tight for the exact velocity, and below the data's log-likelihood in
// expectation otherwise.
//
// Estimators. Policy gradients need ELBO_theta - ELBO_old and grad ELBO_theta, so the
// theta-independent constants drop out and the estimator is the diffusion term alone, with K (t,
// eps) draws per endpoint shared between theta and the old policy (common random numbers):
//   weighting "elbo":    t = delta^u, u ~ U(0, 1) (log-uniform on [delta, 1], density 1 / (t
//   ln(1/delta))),
//                        importance weight w(t) / p(t) = (1 - t) ln(1/delta): bounded, so the
//                        estimator's variance stays finite although w(t) -> inf at the data end;
//   weighting "uniform": t from the given time distribution, weight 1 ("the ELBO up to weighting",
//   the
//                        plain flow-matching loss).
//   elbo_estimate(x0) = -1/K sum_k weight_k |v(x_t_k, t_k) - u_k|^2
#include <string>

#include <torch/types.h>

#include "ramflow/rng.h"
#include "ramflow/rows.h"
#include "ramflow/time.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

/// K draws of (t, eps) for each of B endpoints, with each draw's importance weight.
struct ElboDraws {
  torch::Tensor t;       // [B, K]
  torch::Tensor eps;     // [B, K, ...] (x0's trailing shape)
  torch::Tensor weight;  // [B, K]: w(t) / p(t) ("elbo") or 1 ("uniform")
};

/// Draws t (all B K of them first), then eps, from `rng`. `weighting` is "elbo" or "uniform";
/// `t_min` is delta, the lower end of the "elbo" weighting's range; `time` is used by "uniform"
/// only. `rows`: which rows of the batch x0 holds (rows.h); the draws are that batch's.
ElboDraws draw_elbo_points(const torch::Tensor& x0, int64_t K, const std::string& weighting,
                           double t_min, const TimeDistribution& time, Rng& rng,
                           const Rows& rows = {});

/// The re-noised points of the draws: x0 repeated K times, x_t and u = eps - x0, each [B*K, ...]
/// (row b*K + k is draw k of endpoint b), and t, weight as [B*K].
struct ElboPoints {
  torch::Tensor x0, x_t, u, t, weight;
  Condition cond;  // B*K rows, or empty
};
ElboPoints elbo_points(const torch::Tensor& x0, const Condition& cond, const ElboDraws& draws);

/// Per-endpoint estimate from the velocities at the points, v [B*K, ...]:  -> [B]
///   -1/K sum_k weight_k |v_k - u_k|^2   (norm summed over coordinates)
torch::Tensor elbo_from_velocity(const torch::Tensor& v, const ElboPoints& points, int64_t K);

/// The whole bound with its constants (decoder at t_min included), for tests and evaluation: K
/// "elbo" draws per endpoint and K draws of the decoder term.  x0 [B, ...] -> [B] (no grad)
torch::Tensor elbo_bound(VelocityFieldImpl& model, const torch::Tensor& x0, const Condition& cond,
                         int64_t K, double t_min, Rng& rng);

}  // namespace ramflow
