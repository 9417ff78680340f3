// ODE log-likelihoods (see include/ramflow/likelihood.h).
#include "ramflow/likelihood.h"

#include <cmath>
#include <cstdio>

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {
namespace {

// v(x, t) and div_x v(x, t) for x [B, D] (flattened), t a scalar. `probe` [B, D] selects
// Hutchinson's estimate z^T J z; undefined means the exact trace, one vector-Jacobian product per
// coordinate.
std::pair<torch::Tensor, torch::Tensor> velocity_and_divergence(VelocityFieldImpl& model,
                                                                const torch::Tensor& x, double t,
                                                                const Condition& cond,
                                                                const std::vector<int64_t>& shape,
                                                                const torch::Tensor& probe) {
  torch::AutoGradMode grad(true);
  const int64_t B = x.size(0), D = x.size(1);
  auto xg = x.detach().requires_grad_(true);
  auto v = model.forward(xg.view(shape), torch::full({B}, t, x.options()), cond).reshape({B, D});
  torch::Tensor div;
  if (probe.defined()) {
    auto g = torch::autograd::grad({v}, {xg}, {probe}, /*retain_graph=*/false)[0];  // z^T J: [B, D]
    div = (g * probe).sum(1);
  } else {
    div = torch::zeros({B}, x.options());
    for (int64_t i = 0; i < D; ++i) {
      auto e = torch::zeros_like(v);
      e.select(1, i).fill_(1.0);
      auto g = torch::autograd::grad({v}, {xg}, {e}, /*retain_graph=*/i + 1 < D)[0];  // row i of J
      div = div + g.select(1, i);
    }
  }
  return {v.detach(), div.detach()};
}

// Turns off requires_grad of a model's parameters for its lifetime, then restores each flag.
class ParametersFrozen {
 public:
  // Only trainable parameters are touched, so a frozen model shared between threads is never
  // written.
  explicit ParametersFrozen(VelocityFieldImpl& model) {
    for (auto& p : model.parameters())
      if (p.requires_grad()) {
        p.set_requires_grad(false);
        params_.push_back(p);
      }
  }
  ~ParametersFrozen() {
    for (auto& p : params_) p.set_requires_grad(true);
  }

 private:
  std::vector<torch::Tensor> params_;
};

}  // namespace

torch::Tensor ode_log_likelihood(VelocityFieldImpl& model, const torch::Tensor& x0,
                                 const Condition& cond, const LikelihoodOptions& options, Rng* rng,
                                 const Rows& rows) {
  TORCH_CHECK(x0.dim() >= 2 && x0.size(0) > 0, "ode_log_likelihood: x0 must be [B, ...], got ",
              x0.sizes());
  if (options.steps() < 1) throw ConfigError("likelihood: steps must be >= 1");
  const std::string& how = options.divergence();
  if (how != "auto" && how != "exact" && how != "hutchinson")
    throw ConfigError("likelihood: divergence must be auto, exact or hutchinson, got '" + how +
                      "'");
  const int64_t B = x0.size(0), D = x0.numel() / B;
  const bool exact = how == "exact" || (how == "auto" && D <= options.exact_max_dim());
  torch::Tensor probe;
  if (!exact) {
    TORCH_CHECK(rng != nullptr, "ode_log_likelihood: Hutchinson's estimator needs an Rng");
    probe = rows.randn(*rng, {B, D}, x0.options());
  }
  const ParametersFrozen frozen(model);  // only d v / d x is needed
  const auto shape = x0.sizes().vec();
  auto x = x0.detach().reshape({B, D});
  auto acc = torch::zeros({B}, x0.options().dtype(torch::kDouble));  // int_0^t div v
  const double h = 1.0 / static_cast<double>(options.steps());
  for (int64_t k = 0; k < options.steps(); ++k) {
    // Heun: predictor x_e = x + h v(x, t); corrector with the mean of both slopes, for x and int
    // div v.
    const double t = k * h, t_next = (k + 1) * h;
    auto [v0, d0] = velocity_and_divergence(model, x, t, cond, shape, probe);
    auto x_e = x + h * v0;
    auto [v1, d1] = velocity_and_divergence(model, x_e, t_next, cond, shape, probe);
    x = x + 0.5 * h * (v0 + v1);
    acc = acc + 0.5 * h * (d0 + d1).to(torch::kDouble);
  }
  // log N(x_1; 0, I) = -D/2 log(2 pi) - |x_1|^2 / 2
  auto x1 = x.to(torch::kDouble);
  auto log_prior = -0.5 * static_cast<double>(D) * std::log(2.0 * M_PI) - 0.5 * x1.square().sum(1);
  return log_prior + acc;
}

torch::Tensor log_ratio_on_samples(VelocityFieldImpl& model, VelocityFieldImpl& ref,
                                   const torch::Tensor& x, const Condition& cond,
                                   const LikelihoodOptions& options, Rng* rng, const Rows& rows) {
  return ode_log_likelihood(model, x, cond, options, rng, rows) -
         ode_log_likelihood(ref, x, cond, options, rng, rows);
}

KLEstimate KLEstimate::of(const torch::Tensor& terms) {
  const int64_t n = terms.numel();
  KLEstimate out;
  out.kl = terms.mean().item<double>();
  out.se = n > 1 ? terms.std().item<double>() / std::sqrt(static_cast<double>(n)) : 0.0;
  return out;
}

KLEstimate kl_on_samples(VelocityFieldImpl& model, VelocityFieldImpl& ref, const torch::Tensor& x,
                         const Condition& cond, const LikelihoodOptions& options, Rng* rng) {
  return KLEstimate::of(log_ratio_on_samples(model, ref, x, cond, options, rng));
}

std::string KLEstimate::text() const {
  auto fixed = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return std::string(buf);
  };
  if (kl == 0 && se == 0) return "0";
  if (!std::isfinite(kl)) return "-";
  if (!std::isfinite(se)) return fixed(kl);
  if (reliable()) return fixed(kl) + " ± " + fixed(se);
  if (kl + 2 * se < 0) return "n/a (negative: the estimator failed)";
  return "n/a (too noisy: ± " + fixed(se) + ")";
}

}  // namespace ramflow
