// Flow-GRPO's ODE-to-SDE step, its log-density and the trajectory rollout (see
// include/ramflow/sde.h).
#include "ramflow/sde.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "ramflow/conventions.h"
#include "ramflow/errors.h"

namespace ramflow {

namespace {
void check_step(double t, double t_next) {
  TORCH_CHECK(t <= 1.0 && t_next >= 0.0 && t_next < t,
              "sde step: need 1 >= t > t_next >= 0, got t = ", t, ", t_next = ", t_next);
}
}  // namespace

double sde_sigma(double a, double t, double t_next) {
  check_step(t, t_next);
  const double one_minus_t = t >= 1.0 ? 1.0 - t_next : 1.0 - t;  // Flow-GRPO's clamp at t = 1
  return a * std::sqrt(t / one_minus_t);
}

double sde_drift_weight(double a, double t, double t_next) {
  const double s = sde_sigma(a, t, t_next);
  return s * s / (2.0 * t);
}

SdeCoefficients sde_coefficients(double a, double t, double t_next) {
  const double dt = t_next - t;  // < 0
  const double sigma = sde_sigma(a, t, t_next), c = sigma * sigma / (2.0 * t);
  // mean = x + [v + c (x + (1 - t) v)] dt = (1 + c dt) x + (1 + c (1 - t)) dt v
  return {1.0 + c * dt, (1.0 + c * (1.0 - t)) * dt, sigma * std::sqrt(-dt)};
}

torch::Tensor sde_mean(const torch::Tensor& x, const torch::Tensor& v, const torch::Tensor& x_coef,
                       const torch::Tensor& v_coef) {
  return expand_time(x_coef, x) * x + expand_time(v_coef, v) * v;
}

SdeStep sde_step(const torch::Tensor& x, const torch::Tensor& v, double a, double t,
                 double t_next) {
  TORCH_CHECK(x.sizes() == v.sizes(), "sde_step: x has shape ", x.sizes(), " but v has ",
              v.sizes());
  const SdeCoefficients k = sde_coefficients(a, t, t_next);
  SdeStep out;
  const int64_t B = x.size(0);
  out.mean = a == 0.0 ? x.add(v, t_next - t)  // a = 0: exactly the Euler step
                      : sde_mean(x, v, torch::full({B}, k.x_coef, x.options()),
                                 torch::full({B}, k.v_coef, x.options()));
  out.std = k.std;
  return out;
}

torch::Tensor gaussian_log_prob(const torch::Tensor& x_next, const torch::Tensor& mean,
                                const torch::Tensor& std, const std::string& reduce) {
  TORCH_CHECK(x_next.sizes() == mean.sizes(), "gaussian_log_prob: x_next ", x_next.sizes(),
              " vs mean ", mean.sizes());
  const int64_t B = x_next.size(0);
  TORCH_CHECK(std.dim() == 1 && std.size(0) == B, "gaussian_log_prob: std has shape ", std.sizes(),
              ", expected [", B, "]");
  // log N(x; m, s^2) = -(x - m)^2 / (2 s^2) - log s - log(2 pi) / 2, per coordinate
  auto per_coord = (x_next - mean).square().reshape({B, -1});  // [B, n]
  const double n = static_cast<double>(per_coord.size(1));
  const auto constant = -torch::log(std) - 0.5 * std::log(2.0 * M_PI);  // [B]
  if (reduce == "mean") return per_coord.mean(1) / (-2.0 * std.square()) + constant;
  if (reduce == "sum") return per_coord.sum(1) / (-2.0 * std.square()) + n * constant;
  throw ConfigError("log-probability reduction must be mean or sum, got '" + reduce + "'");
}

torch::Tensor gaussian_log_prob(const torch::Tensor& x_next, const torch::Tensor& mean, double std,
                                const std::string& reduce) {
  TORCH_CHECK(std > 0, "gaussian_log_prob: std must be > 0, got ", std);
  return gaussian_log_prob(x_next, mean, torch::full({x_next.size(0)}, std, mean.options()),
                           reduce);
}

torch::Tensor sde_sampler_step(const VelocityFn& v, const torch::Tensor& x, double t, double t_next,
                               const torch::Tensor& noise, double a) {
  auto step = sde_step(x, v(x, torch::full({x.size(0)}, t, x.options())), a, t, t_next);
  return step.mean.add(noise, step.std);
}

torch::Tensor flow_grpo_sde_step(const VelocityFn& v, const torch::Tensor& x, double t,
                                 double t_next, const torch::Tensor& noise) {
  return sde_sampler_step(v, x, t, t_next, noise, 0.7);
}

torch::Tensor memoryless_sde_step(const VelocityFn& v, const torch::Tensor& x, double t,
                                  double t_next, const torch::Tensor& noise) {
  return sde_sampler_step(v, x, t, t_next, noise, std::sqrt(2.0));
}

std::vector<int64_t> stochastic_steps(int64_t N, int64_t window, double window_end, Rng& rng) {
  std::vector<int64_t> steps;
  int64_t start = 0, w = N;
  if (window > 0) {
    w = std::min(window, N);
    start = rng.randint(0, std::max<int64_t>(0, static_cast<int64_t>(window_end * N) - w) + 1);
  }
  for (int64_t k = start; k < start + w; ++k) steps.push_back(k);
  return steps;
}

Trajectory sample_trajectory(VelocityFieldImpl& model, const torch::Tensor& x1,
                             const Condition& cond, const TrajectoryOptions& options, Rng& rng) {
  const auto& grid = options.grid();
  TORCH_CHECK(grid.size() >= 2 && grid.front() == 1.0 && grid.back() == 0.0,
              "sample_trajectory: the grid must run from 1 to 0");
  const int64_t N = static_cast<int64_t>(grid.size()) - 1, B = x1.size(0);
  std::vector<char> stochastic(N, 0);
  for (int64_t k : options.sde_steps()) {
    TORCH_CHECK(k >= 0 && k < N, "sample_trajectory: SDE step ", k, " outside [0, ", N, ")");
    stochastic[k] = 1;
  }
  Trajectory out;
  out.grid = grid;
  out.sde_steps = options.sde_steps();
  std::sort(out.sde_steps.begin(), out.sde_steps.end());
  std::vector<int64_t> shape = {N + 1};
  shape.insert(shape.end(), x1.sizes().begin(), x1.sizes().end());
  // Ordinary tensors, filled in place under inference mode: methods may save them for backward.
  out.x = torch::empty(shape, x1.options().requires_grad(false));          // [N + 1, B, ...]
  out.log_prob = torch::zeros({N, B}, x1.options().requires_grad(false));  // [N, B]
  {
    c10::InferenceMode inference;
    auto& xs = out.x;
    auto& log_prob = out.log_prob;
    xs[0].copy_(x1);
    torch::Tensor x = x1;
    for (int64_t k = 0; k < N; ++k) {
      const double t = grid[k], t_next = grid[k + 1];
      auto v = model.forward(x, torch::full({B}, t, x.options()), cond);
      ++out.nfe;
      if (stochastic[k] && options.noise_level() > 0) {
        auto step = sde_step(x, v, options.noise_level(), t, t_next);
        x = step.mean.add(options.rows().randn(rng, x.sizes(), x.options()), step.std);
        log_prob[k].copy_(gaussian_log_prob(x, step.mean, torch::full({B}, step.std, x.options()),
                                            options.log_prob_reduce()));
      } else {
        x = x.add(v, t_next - t);  // Euler
      }
      xs[k + 1].copy_(x);
    }
  }
  return out;
}

}  // namespace ramflow
