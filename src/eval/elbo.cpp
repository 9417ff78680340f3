// The ELBO of a flow-matching model (see include/ramflow/elbo.h for the derivation).
#include "ramflow/elbo.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/conventions.h"
#include "ramflow/errors.h"

namespace ramflow {

ElboDraws draw_elbo_points(const torch::Tensor& x0, int64_t K, const std::string& weighting,
                           double t_min, const TimeDistribution& time, Rng& rng, const Rows& rows) {
  TORCH_CHECK(x0.dim() >= 1 && K >= 1, "elbo: x0 ", x0.sizes(), " and K ", K);
  const int64_t B = x0.size(0);
  const auto opts = x0.options().requires_grad(false);
  ElboDraws d;
  if (weighting == "elbo") {
    if (!(t_min > 0 && t_min < 1)) throw ConfigError("elbo: t_min must be in (0, 1)");
    const double L = std::log(1.0 / t_min);
    // t = delta^u = exp(-L u): log-uniform on [delta, 1]; the weight (1 - t)/t divided by the
    // density 1/(t L) is (1 - t) L. Drawn in double and rounded once, so t stays inside [delta, 1).
    auto u = rows.rand(rng, {B, K}, torch::TensorOptions().dtype(torch::kDouble));
    auto t = torch::exp(-L * u);
    d.t = t.to(opts);
    d.weight = ((1.0 - t) * L).to(opts);
  } else if (weighting == "uniform") {
    d.t = rows.repeated(K)
              .draw(B * K, [&](int64_t n) { return time.sample(n, rng, opts); })
              .view({B, K});
    d.weight = torch::ones({B, K}, opts);
  } else {
    throw ConfigError("elbo: weighting must be elbo or uniform, got '" + weighting + "'");
  }
  std::vector<int64_t> shape = {B, K};
  for (int64_t i = 1; i < x0.dim(); ++i) shape.push_back(x0.size(i));
  d.eps = rows.randn(rng, shape, opts);  // [B, K, ...]
  return d;
}

ElboPoints elbo_points(const torch::Tensor& x0, const Condition& cond, const ElboDraws& draws) {
  const int64_t B = x0.size(0), K = draws.t.size(1);
  TORCH_CHECK(draws.t.size(0) == B && draws.eps.size(0) == B && draws.eps.size(1) == K,
              "elbo: draws of t ", draws.t.sizes(), " and eps ", draws.eps.sizes(),
              " do not fit x0 ", x0.sizes());
  ElboPoints p;
  p.x0 = repeat_rows(x0.detach(), K);          // [B*K, ...]
  auto eps = draws.eps.reshape(p.x0.sizes());  // [B*K, ...]
  p.t = draws.t.reshape({B * K});
  p.weight = draws.weight.reshape({B * K});
  p.x_t = interpolate(p.x0, eps, p.t);
  p.u = velocity_target(p.x0, eps);
  p.cond = cond.repeat_interleave(K);
  return p;
}

torch::Tensor elbo_from_velocity(const torch::Tensor& v, const ElboPoints& points, int64_t K) {
  TORCH_CHECK(v.sizes() == points.u.sizes(), "elbo: v ", v.sizes(), " and u ", points.u.sizes(),
              " differ");
  const int64_t BK = v.size(0);
  auto sq = (v - points.u).reshape({BK, -1}).square().sum(1);  // [B*K] |v - u|^2
  return -(points.weight * sq).view({BK / K, K}).mean(1);      // [B]
}

torch::Tensor elbo_bound(VelocityFieldImpl& model, const torch::Tensor& x0, const Condition& cond,
                         int64_t K, double t_min, Rng& rng) {
  torch::NoGradGuard no_grad;
  const auto draws = draw_elbo_points(x0, K, "elbo", t_min, TimeDistribution(), rng);
  const auto points = elbo_points(x0, cond, draws);
  auto diffusion =
      elbo_from_velocity(model.forward(points.x_t, points.t, points.cond), points, K);  // [B]
  // Decoder at t = delta, averaged over K eps draws:
  //   -D/2 log(2 pi sd^2) - 1/2 (1 - delta)^2 |v(x_delta, delta) - u|^2,   sd = delta / (1 -
  //   delta).
  const int64_t B = x0.size(0), D = x0.numel() / std::max<int64_t>(B, 1);
  const auto x0_k = points.x0;  // [B*K, ...]
  auto eps = rng.randn(x0_k.sizes(), x0.options());
  auto t = torch::full({B * K}, t_min, x0.options());
  auto err = (model.forward(interpolate(x0_k, eps, t), t, points.cond) - velocity_target(x0_k, eps))
                 .reshape({B, K, -1})
                 .square()
                 .sum(2)
                 .mean(1);  // [B]
  const double sd = t_min / (1.0 - t_min);
  auto decoder = -0.5 * static_cast<double>(D) * std::log(2.0 * M_PI * sd * sd) -
                 0.5 * (1.0 - t_min) * (1.0 - t_min) * err;
  return decoder + diffusion;
}

}  // namespace ramflow
