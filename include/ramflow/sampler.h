#pragma once
// ODE samplers: small pure functions of (v, x, t, t_next, noise). No hidden step counters: any step
// (x, t, t_next) can be re-evaluated later. Generation runs from t = 1 (noise) down to t = 0
// (data).
#include <functional>
#include <string>

#include <torch/types.h>

#include "ramflow/registry.h"
#include "ramflow/rng.h"
#include "ramflow/rows.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

/// v(x, t) for a batch: x [B, ...], t [B] -> [B, ...].
using VelocityFn = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& t)>;

/// One step from t to t_next (< t). `noise` ~ N(0, I) with x's shape; ODE steps ignore it.
using StepFn = torch::Tensor (*)(const VelocityFn& v, const torch::Tensor& x, double t,
                                 double t_next, const torch::Tensor& noise);

struct SamplerInfo {
  StepFn step = nullptr;
  int64_t nfe_per_step = 1;  // network evaluations per step
  bool stochastic = false;   // whether `noise` is used
};

/// Every registered sampler name (src/samplers/builtin_samplers.cpp).
const Registry<SamplerInfo>& samplers();

/// Euler (first order):  x_next = x + (t_next - t) v(x, t).
torch::Tensor euler_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                         const torch::Tensor& noise);
/// Heun (second order, trapezoidal):
///   x_e = x + dt v(x, t);   x_next = x + dt (v(x, t) + v(x_e, t_next)) / 2,   dt = t_next - t.
torch::Tensor heun_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                        const torch::Tensor& noise);

/// DPM-Solver-2 (DPM-Solver++(2S), data prediction, midpoint in log-SNR), second order, two
/// evaluations per step: DiffusionNFT's deterministic "dpm2" sampler (src/samplers/dpm2.cpp has the
/// equations).
torch::Tensor dpm2_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                        const torch::Tensor& noise);

struct SampleOptions {
  TORCH_ARG(std::string, sampler) = "euler";
  TORCH_ARG(int64_t, steps) = 25;
  TORCH_ARG(double, shift) = 1.0;  // grid shift, see time_grid()
  /// "uniform" (time_grid) or "diffusers" (diffusers_grid: the SD3 scheduler's timesteps).
  TORCH_ARG(std::string, grid) = "uniform";
};

/// The grid t_0 = 1 > ... > t_steps = 0 the options name; ConfigError for a bad one.
std::vector<double> sampling_grid(const SampleOptions& options);

struct SampleResult {
  torch::Tensor x0;  // [B, ...] the endpoint at t = 0
  int64_t nfe = 0;   // network evaluations used (per batch, not per sample)
};

/// Integrates from x1 (t = 1) to t = 0 on the shifted grid. Runs without autograd. `rng` feeds the
/// noise of stochastic samplers and may be null for ODE samplers; `rows`: which rows of the batch
/// x1 holds (rows.h), whose noise the stochastic steps draw.
SampleResult sample(const VelocityFn& v, const torch::Tensor& x1, const SampleOptions& options,
                    Rng* rng = nullptr, const Rows& rows = {});
/// For a diagnosis once an endpoint came out non-finite: integrates again from x1 with the same ODE
/// sampler, checking every step, and returns the first step k (1-based, of options.steps()) after
/// which some sample is non-finite; -1 if none is (or the sampler is stochastic, which cannot be
/// replayed).
int64_t first_nonfinite_step(const VelocityFn& v, const torch::Tensor& x1,
                             const SampleOptions& options);

/// The same for a model and the samples' conditions (B rows, or empty).
SampleResult sample(VelocityFieldImpl& model, const torch::Tensor& x1, const Condition& cond,
                    const SampleOptions& options, Rng* rng = nullptr, const Rows& rows = {});

}  // namespace ramflow
