#pragma once
// The conventions every part of ramflow obeys, in one place.
//
// Time: t = 0 is clean data, t = 1 is Gaussian noise (the rectified-flow / SD3 convention).
//   Forward (noising) process:  x_t = (1 - t) x0 + t eps,   eps ~ N(0, I)
//   Velocity target:            u = d x_t / dt = eps - x0   (points from data to noise)
//   Generation integrates dx/dt = v(x, t) from t = 1 down to t = 0; one Euler step is
//                               x <- x + (t_next - t) v(x, t),   t_next < t.
// Papers written in the opposite convention (Adjoint Matching, EAM: t = 0 noise, t = 1 data) are
// converted where their method's equations are written out (adjoint_matching.h, eam.h).
//
// Objective: maximise E_p[r] - lambda KL(p || p_ref), optimum p*(x) ∝ p_ref(x) exp(r(x) / lambda).
// The reward multiplier m = 1 / lambda means the same thing in every method that has it.
// p_ref is the base *model's* endpoint law (what its sampler produces), not the data.
//
// Shape letters used in comments throughout:
//   B  batch (endpoints in a step = P * G)     P  condition groups (prompts) per step
//   G  endpoints per group                     K  (t, eps) draws per endpoint
//   D  data dimension (flattened)              N  pool / evaluation sample count
#include <vector>

#include <torch/types.h>

namespace ramflow {

/// Broadcasts a per-sample time t [B] against x [B, ...] as [B, 1, ..., 1].
inline torch::Tensor expand_time(const torch::Tensor& t, const torch::Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = t.size(0);
  return t.reshape(shape);
}

/// Repeats each row K times, [B, ...] -> [B*K, ...] with row b*K + k = row b (as
/// repeat_interleave).
inline torch::Tensor repeat_rows(const torch::Tensor& x, int64_t K) {
  if (K == 1) return x;
  std::vector<int64_t> expanded = x.sizes().vec();
  expanded.insert(expanded.begin() + 1, K);  // [B, K, ...]
  std::vector<int64_t> out = x.sizes().vec();
  out[0] *= K;
  return x.unsqueeze(1).expand(expanded).reshape(out);  // one copy
}

/// x_t = (1 - t) x0 + t eps = x0 + t (eps - x0).   x0, eps: [B, ...]; t: [B].
inline torch::Tensor interpolate(const torch::Tensor& x0, const torch::Tensor& eps,
                                 const torch::Tensor& t) {
  return torch::lerp(x0, eps, expand_time(t, x0));
}

/// The flow-matching velocity target u = eps - x0 (independent of t for the linear path).
inline torch::Tensor velocity_target(const torch::Tensor& x0, const torch::Tensor& eps) {
  return eps - x0;
}

}  // namespace ramflow
