// Training-time distributions and sampling grids (see include/ramflow/time.h).
#include "ramflow/time.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

void TimeDistribution::validate() const {
  if (kind == "uniform") return;
  if (kind == "power") {
    if (!(alpha > -1.0)) throw ConfigError("time distribution 'power': alpha must be > -1");
    return;
  }
  if (kind == "logit_normal") {
    if (!(std > 0.0)) throw ConfigError("time distribution 'logit_normal': std must be > 0");
    return;
  }
  throw ConfigError("unknown time distribution '" + kind +
                    "' (known: uniform, power, logit_normal)");
}

torch::Tensor TimeDistribution::sample(int64_t n, Rng& rng,
                                       const torch::TensorOptions& opts) const {
  validate();
  torch::Tensor t;
  if (kind == "uniform") {
    t = rng.rand({n});
  } else if (kind == "power") {
    // CDF F(t) = t^(alpha+1), so t = F^-1(u) = u^(1/(alpha+1)).
    t = rng.rand({n}).pow(1.0 / (alpha + 1.0));
  } else {
    t = torch::sigmoid(mean + std * rng.randn({n}));
  }
  // Keep t strictly inside (0, 1): rand can return exactly 0.
  t = t.clamp(1e-6, 1.0 - 1e-6);
  // Drawn in float32 on the CPU whatever the options, so a seed gives the same times everywhere.
  if (opts.has_dtype()) t = t.to(opts.dtype());
  return opts.has_device() ? t.to(opts.device()) : t;
}

double TimeDistribution::density(double t) const {
  if (t <= 0.0 || t >= 1.0) return 0.0;
  if (kind == "uniform") return 1.0;
  if (kind == "power") return (alpha + 1.0) * std::pow(t, alpha);
  // logit-normal: z = logit(t) ~ N(mean, std^2), dt = t(1-t) dz.
  double z = std::log(t / (1.0 - t));
  double g = std::exp(-0.5 * std::pow((z - mean) / std, 2)) / (std * std::sqrt(2.0 * M_PI));
  return g / (t * (1.0 - t));
}

double shift_time(double t, double shift) { return shift * t / (1.0 + (shift - 1.0) * t); }

std::vector<double> time_grid(int64_t steps, double shift) {
  if (steps < 1)
    throw ConfigError("sampling grid: steps must be >= 1, got " + std::to_string(steps));
  if (!(shift > 0.0)) throw ConfigError("sampling grid: shift must be > 0");
  std::vector<double> grid(steps + 1);
  for (int64_t k = 0; k <= steps; ++k) {
    double t = 1.0 - static_cast<double>(k) / static_cast<double>(steps);
    grid[k] = shift_time(t, shift);
  }
  grid[0] = 1.0;  // exact endpoints regardless of rounding in the shift
  grid[steps] = 0.0;
  return grid;
}

std::vector<double> diffusers_grid(int64_t steps, double shift, int64_t train_steps) {
  if (steps < 1)
    throw ConfigError("sampling grid: steps must be >= 1, got " + std::to_string(steps));
  if (!(shift > 0.0)) throw ConfigError("sampling grid: shift must be > 0");
  if (train_steps < 2) throw ConfigError("sampling grid: num_train_timesteps must be >= 2");
  const double sigma_min = shift_time(1.0 / static_cast<double>(train_steps), shift);
  std::vector<double> grid(steps + 1, 0.0);
  for (int64_t k = 0; k < steps; ++k) {
    // numpy's linspace(1, sigma_min, steps) (one point: 1), then the second shift.
    const double u = steps == 1 ? 1.0
                                : 1.0 + (sigma_min - 1.0) * static_cast<double>(k) /
                                            static_cast<double>(steps - 1);
    grid[k] = shift_time(u, shift);
  }
  grid[0] = 1.0;
  return grid;
}

}  // namespace ramflow
