// Re-noising endpoints as in pretraining (see include/ramflow/renoise.h).
#include "ramflow/renoise.h"

#include <torch/torch.h>

#include "ramflow/conventions.h"

namespace ramflow {

Renoised renoise(const torch::Tensor& x0, const Condition& cond, int64_t K,
                 const TimeDistribution& time, Rng& rng, const Rows& rows) {
  TORCH_CHECK(K >= 1, "renoise: K must be >= 1, got ", K);
  Renoised r;
  const auto opts = x0.options();
  r.x0 = repeat_rows(x0.detach(), K);   // [B*K, ...]
  r.cond = cond.repeat_interleave(K);   // B*K rows
  const Rows drawn = rows.repeated(K);  // the rows of [B*K] held
  r.t = drawn.draw(r.x0.size(0), [&](int64_t n) { return time.sample(n, rng, opts); });  // [B*K]
  r.eps = drawn.randn(rng, r.x0.sizes(), opts);  // [B*K, ...]
  r.x_t = interpolate(r.x0, r.eps, r.t);
  return r;
}

Renoised renoise_at(const torch::Tensor& x0, const Condition& cond, const torch::Tensor& t,
                    Rng& rng, const Rows& rows) {
  const int64_t B = x0.size(0);
  TORCH_CHECK(t.dim() == 1 && B > 0 && t.size(0) % B == 0 && t.size(0) >= B, "renoise_at: times ",
              t.sizes(), " are not K per endpoint of ", x0.sizes());
  const int64_t K = t.size(0) / B;
  Renoised r;
  const auto opts = x0.options();
  r.x0 = repeat_rows(x0.detach(), K);                       // [B*K, ...]
  r.cond = cond.repeat_interleave(K);                       // B*K rows
  r.t = t.to(opts);                                         // [B*K]
  r.eps = rows.repeated(K).randn(rng, r.x0.sizes(), opts);  // [B*K, ...]
  r.x_t = interpolate(r.x0, r.eps, r.t);
  return r;
}

}  // namespace ramflow
