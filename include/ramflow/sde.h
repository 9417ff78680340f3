#pragma once
// The ODE-to-SDE family with the flow's marginals (Flow-GRPO, arXiv 2505.05470; the
// sd3_sde_with_logprob step of its released code), in ramflow's convention (t = 1 noise, t = 0
// data, generation with dt = t_next - t < 0):
//
//   sigma_t = a sqrt(t / (1 - t))                 (noise level a; at t = 1, (1 - t) -> (1 -
//   t_next)) mean    = x + [ v + sigma_t^2 / (2 t) (x + (1 - t) v) ] dt x_next  = mean + sigma_t
//   sqrt(-dt) xi,  xi ~ N(0, I)
//
// a = 0 is exactly the Euler ODE step. a = sqrt(2) is Adjoint Matching's memoryless schedule
// sigma_t^2 = 2 t / (1 - t): the drift becomes 2 v + x / (1 - t) and the endpoint is independent of
// the starting noise. Flow-GRPO's default a = 0.7 keeps about a quarter of that variance.
//
// The per-step Gaussian log-density log N(x_next; mean, sigma_t^2 |dt| I) is what Flow-GRPO's ratio
// uses. Its released code takes the mean over coordinates (so a clip range of 1e-4 suits 16x64x64
// latents); "sum" is the true log-density.
#include <string>
#include <vector>

#include <torch/types.h>

#include "ramflow/rng.h"
#include "ramflow/sampler.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

/// sigma_t = a sqrt(t / (1 - t)), with (1 - t) replaced by (1 - t_next) at t = 1 (Flow-GRPO's
/// clamp).
double sde_sigma(double a, double t, double t_next);

/// c_t = sigma_t^2 / (2 t): the weight of the score correction in the SDE drift.
double sde_drift_weight(double a, double t, double t_next);

/// The step t -> t_next as mean = x_coef x + v_coef v(x, t), x_next = mean + std xi:
///   x_coef = 1 + c_t dt,  v_coef = (1 + c_t (1 - t)) dt,  std = sigma_t sqrt(-dt).
struct SdeCoefficients {
  double x_coef = 1, v_coef = 0, std = 0;
};
SdeCoefficients sde_coefficients(double a, double t, double t_next);

/// mean = x_coef x + v_coef v with one coefficient per sample (x_coef, v_coef [B]). The rollout and
/// the methods that re-evaluate its log-densities both use it, so the two computations agree bit
/// for bit.
torch::Tensor sde_mean(const torch::Tensor& x, const torch::Tensor& v, const torch::Tensor& x_coef,
                       const torch::Tensor& v_coef);

/// One step's Gaussian transition x_next ~ N(mean, std^2 I).
struct SdeStep {
  torch::Tensor mean;  // [B, ...]
  double std = 0;      // sigma_t sqrt(-dt)
};

/// The transition from x at t to t_next < t, given v = v(x, t). Differentiable in x and v.
SdeStep sde_step(const torch::Tensor& x, const torch::Tensor& v, double a, double t, double t_next);

/// log N(x_next; mean, std^2 I) per sample, reduced over coordinates by "mean" or "sum". -> [B]
torch::Tensor gaussian_log_prob(const torch::Tensor& x_next, const torch::Tensor& mean, double std,
                                const std::string& reduce);
/// The same with one std per sample, std [B] (differentiable in x_next and mean).
torch::Tensor gaussian_log_prob(const torch::Tensor& x_next, const torch::Tensor& mean,
                                const torch::Tensor& std, const std::string& reduce);

/// The sampler-registry form (v, x, t, t_next, noise) for a fixed noise level.
torch::Tensor sde_sampler_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                               const torch::Tensor& noise, double a);
/// Registered samplers: "sde" (a = 0.7, Flow-GRPO's default) and "memoryless" (a = sqrt 2).
torch::Tensor flow_grpo_sde_step(const VelocityFn& v, const torch::Tensor& x, double t,
                                 double t_next, const torch::Tensor& noise);
torch::Tensor memoryless_sde_step(const VelocityFn& v, const torch::Tensor& x, double t,
                                  double t_next, const torch::Tensor& noise);

/// The stochastic steps of an N-step rollout: all of them (window 0), or `window` consecutive steps
/// starting at a step drawn uniformly from [0, window_end N - window] (Flow-GRPO's window variant).
std::vector<int64_t> stochastic_steps(int64_t N, int64_t window, double window_end, Rng& rng);

/// A rollout that keeps what the SDE methods need. Steps listed in `sde_steps` use the SDE with
/// noise level a; the others are Euler steps (Flow-GRPO's window variant).
struct TrajectoryOptions {
  TORCH_ARG(std::vector<double>, grid) = {};  // t_0 = 1 > t_1 > ... > t_N = 0
  TORCH_ARG(double, noise_level) = 0.0;       // a
  TORCH_ARG(std::vector<int64_t>,
            sde_steps) = {};  // indices k of the stochastic steps t_k -> t_k+1
  TORCH_ARG(std::string, log_prob_reduce) = "mean";  // reduction of the per-step log-densities
  TORCH_ARG(Rows,
            rows) = Rows();  // which rows of the batch x1 holds, whose noise is drawn (rows.h)
};

struct Trajectory {
  std::vector<double> grid;  // [N + 1]
  torch::Tensor x;  // [N + 1, B, ...]: x[k] at time grid[k]; x[0] the noise, x[N] the endpoint
  std::vector<int64_t> sde_steps;  // the stochastic steps
  torch::Tensor
      log_prob;     // [N, B]: log-density of each SDE step under the rollout model (0 on ODE steps)
  int64_t nfe = 0;  // network evaluations (per batch)
};

/// Runs the rollout without autograd.
Trajectory sample_trajectory(VelocityFieldImpl& model, const torch::Tensor& x1,
                             const Condition& cond, const TrajectoryOptions& options, Rng& rng);

}  // namespace ramflow
