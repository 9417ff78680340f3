// Classifier-free guidance (see include/ramflow/guidance.h).
#include "ramflow/guidance.h"

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/task.h"

namespace ramflow {

GuidedVelocityImpl::GuidedVelocityImpl(VelocityFieldImpl& model, double scale) : model_(model), scale_(scale) {
  if (!(scale >= 0.0)) throw ConfigError("guidance scale must be >= 0, got " + std::to_string(scale));
}

torch::Tensor GuidedVelocityImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                          const torch::Tensor& cond) {
  TORCH_CHECK(cond.defined() && cond.size(0) == x.size(0),
              "GuidedVelocity: classifier-free guidance needs a condition per sample, [", x.size(0), "]");
  if (scale_ == 1.0) return model_.forward(x, t, cond);
  auto null = torch::full_like(cond, kNullLabel);
  if (scale_ == 0.0) return model_.forward(x, t, null);
  const int64_t B = x.size(0);
  // One batch of 2B: the conditional half first, then the null half.
  auto v = model_.forward(torch::cat({x, x}), torch::cat({t, t}), torch::cat({cond, null}));  // [2B, ...]
  auto v_c = v.narrow(0, 0, B), v_u = v.narrow(0, B, B);
  return v_u + scale_ * (v_c - v_u);
}

nlohmann::json GuidedVelocityImpl::spec() const {
  return {{"type", "guided"}, {"scale", scale_}, {"model", model_.spec()}};
}

}  // namespace ramflow
