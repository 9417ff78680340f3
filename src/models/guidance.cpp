// Classifier-free guidance (see include/ramflow/guidance.h).
#include "ramflow/guidance.h"

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

GuidedVelocityImpl::GuidedVelocityImpl(VelocityFieldImpl& model, double scale, Condition null)
    : model_(model), scale_(scale), null_(std::move(null)) {
  if (!(scale >= 0.0))
    throw ConfigError("guidance scale must be >= 0, got " + std::to_string(scale));
}

torch::Tensor GuidedVelocityImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                          const Condition& cond) {
  TORCH_CHECK(cond.defined() && cond.size() == x.size(0),
              "GuidedVelocity: classifier-free guidance needs a condition per sample, [", x.size(0),
              "]");
  if (scale_ == 1.0) return model_.forward(x, t, cond);
  TORCH_CHECK(null_.size() == 1, "GuidedVelocity: the null condition must be one row, got ",
              null_.size());
  const int64_t B = x.size(0);
  // The null row for every sample, on the samples' device.
  const Condition null =
      null_.to(x.device()).index_select(torch::zeros({B}, torch::kLong));  // B rows
  if (scale_ == 0.0) return model_.forward(x, t, null);
  // One batch of 2B: the conditional half first, then the null half.
  auto v = model_.forward(torch::cat({x, x}), torch::cat({t, t}),
                          Condition::cat({cond, null}));  // [2B, ...]
  auto v_c = v.narrow(0, 0, B), v_u = v.narrow(0, B, B);
  return v_u + scale_ * (v_c - v_u);
}

nlohmann::json GuidedVelocityImpl::spec() const {
  return {{"type", "guided"}, {"scale", scale_}, {"model", model_.spec()}};
}

}  // namespace ramflow
