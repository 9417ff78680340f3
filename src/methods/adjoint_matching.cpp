// Adjoint Matching (see include/ramflow/adjoint_matching.h for the equations and sources).
#include "ramflow/adjoint_matching.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/conventions.h"
#include "ramflow/errors.h"
#include "ramflow/path_rows.h"
#include "ramflow/sde.h"

namespace ramflow {

torch::Tensor lean_adjoint(VelocityFieldImpl& base, const std::vector<double>& grid,
                           const torch::Tensor& x, const Condition& cond,
                           const torch::Tensor& terminal, double a) {
  const int64_t N = static_cast<int64_t>(grid.size()) - 1;
  TORCH_CHECK(N >= 1 && x.size(0) == N + 1, "lean_adjoint: x has shape ", x.sizes(), " for ", N,
              " grid steps; expected [", N + 1, ", B, ...]");
  TORCH_CHECK(terminal.sizes() == x[N].sizes(), "lean_adjoint: terminal has shape ",
              terminal.sizes(), ", expected ", x[N].sizes());
  torch::AutoGradMode grad_mode(true);
  auto adjoint = torch::empty_like(x);  // [N + 1, B, ...]
  adjoint[N].copy_(terminal);
  torch::Tensor a_next = terminal.detach();
  const int64_t B = terminal.size(0);
  for (int64_t k = N - 1; k >= 0; --k) {
    const double t = grid[k], t_next = grid[k + 1], dt = t_next - t;
    const double c = a > 0 ? sde_drift_weight(a, t, t_next) : 0.0;
    auto x_k = x[k].detach().requires_grad_(true);
    auto v = base.forward(x_k, torch::full({B}, t, x_k.options()), cond);
    // J_v(x_k)^T a_k+1 as one vector-Jacobian product
    auto vjp = torch::autograd::grad({v}, {x_k}, {a_next})[0];
    a_next = (a_next + dt * ((1.0 + c * (1.0 - t)) * vjp + c * a_next)).detach();
    adjoint[k].copy_(a_next);
  }
  return adjoint.detach();
}

void AdjointMatchingOptions::validate() const {
  if (multiplier_ < 0) throw ConfigError("adjoint-matching: multiplier must be >= 0");
  if (!(train_fraction_ > 0 && train_fraction_ <= 1))
    throw ConfigError("adjoint-matching: train_fraction must be in (0, 1]");
  if (!(noise_level_ > 0)) throw ConfigError("adjoint-matching: noise_level must be > 0");
}

nlohmann::json AdjointMatchingOptions::to_json() const {
  return {{"multiplier", multiplier_},
          {"train_fraction", train_fraction_},
          {"noise_level", noise_level_}};
}

AdjointMatching::AdjointMatching(AdjointMatchingOptions options) : options_(std::move(options)) {
  options_.validate();
}

RolloutSpec AdjointMatching::rollout_spec() const {
  RolloutSpec spec;
  spec.noise_level = options_.noise_level();
  spec.trajectory = true;
  spec.reward_gradient = true;
  return spec;
}

void AdjointMatching::prepare(RolloutBatch& batch, const Policies& models, Rng&) {
  TORCH_CHECK(batch.trajectory.defined() && batch.reward_grad.defined(),
              "adjoint-matching: the batch has no trajectory or reward gradient");
  auto terminal = -options_.multiplier() * batch.reward_grad;  // a_N = grad g, g = -m r
  auto adjoint = lean_adjoint(models.ref, batch.grid, batch.trajectory, batch.cond, terminal,
                              options_.noise_level());  // [N + 1, B, ...]
  batch.extras["adjoint"] =
      adjoint.transpose(0, 1).contiguous();  // [B, N + 1, ...] (sliced by sample)
}

LossOutput AdjointMatching::loss(const RolloutBatch& batch, const Policies& models, Rng& rng) {
  const auto it = batch.extras.find("adjoint");
  TORCH_CHECK(it != batch.extras.end(), "adjoint-matching: prepare() was not called on the batch");
  const int64_t b = batch.size(), N = static_cast<int64_t>(batch.grid.size()) - 1;
  // The trained steps: a random subset of the N steps (all with train_fraction 1).
  std::vector<int64_t> steps;
  const int64_t J =
      std::max<int64_t>(1, static_cast<int64_t>(std::lround(N * options_.train_fraction())));
  if (J >= N) {
    for (int64_t k = 0; k < N; ++k) steps.push_back(k);
  } else {
    auto perm = torch::argsort(rng.rand({N}));
    for (int64_t j = 0; j < J; ++j) steps.push_back(perm[j].item<int64_t>());
  }
  std::vector<double> drift_row, sigma_row;
  for (int64_t k : steps) {
    const double t = batch.grid[k], t_next = batch.grid[k + 1];
    drift_row.push_back(1.0 + sde_drift_weight(options_.noise_level(), t, t_next) * (1.0 - t));
    sigma_row.push_back(sde_sigma(options_.noise_level(), t, t_next));
  }
  const PathRows rows = path_rows(batch, steps);  // row j b + i = step steps[j] of sample i
  const auto &x_k = rows.x, &t = rows.t;
  const Condition& cond = rows.cond;
  auto a_k =
      it->second.index_select(1, rows.index).transpose(0, 1).reshape(x_k.sizes());  // [J b, ...]
  auto sigma = expand_time(rows.per_row(sigma_row), x_k),
       drift = expand_time(rows.per_row(drift_row), x_k);

  torch::Tensor v_ref;
  {
    torch::NoGradGuard no_grad;
    v_ref = models.ref.forward(x_k, t, cond);
  }
  auto v = models.policy.forward(x_k, t, cond);
  // residual = u_theta - u* = -(drift (v - v_ref) / sigma - sigma a)  (the sign does not matter)
  auto residual = drift * (v - v_ref) / sigma - sigma * a_k;
  LossOutput out;
  out.loss = residual.square().reshape({J * b, -1}).sum(1).mean();
  {
    torch::NoGradGuard no_grad;
    out.metrics["adjoint_norm"] = a_k.reshape({J * b, -1}).norm(2, 1).mean().item<double>();
    out.metrics["nfe_train"] =
        static_cast<double>(N + 2 * J);  // N VJPs in prepare; policy and ref per step
    out.metrics["drift_from_ref"] = (v.detach() - v_ref).square().mean().item<double>();
  }
  return out;
}

void AdjointMatching::add_params(ParamTable& t) {
  t.group(
      "Adjoint Matching (method adjoint-matching; needs a differentiable reward; uses "
      "--multiplier)");
  t.number("am_train_fraction", 1.0,
           "share of the rollout steps in the loss, drawn at random per update", 0, 1, true);
}

MethodPtr AdjointMatching::from_config(const Config& cfg) {
  return std::make_unique<AdjointMatching>(AdjointMatchingOptions()
                                               .multiplier(cfg.number("multiplier"))
                                               .train_fraction(cfg.number("am_train_fraction")));
}

}  // namespace ramflow
