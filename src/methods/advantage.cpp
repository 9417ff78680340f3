// Reward signals (see include/ramflow/advantage.h).
#include "ramflow/advantage.h"

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {
namespace {

torch::Tensor grouped(const torch::Tensor& r, int64_t group_size) {
  TORCH_CHECK(r.dim() == 1 && group_size >= 1 && r.size(0) % group_size == 0,
              "advantage: rewards of shape ", r.sizes(), " do not split into groups of ",
              group_size);
  return r.reshape({-1, group_size});  // [P, G]
}

}  // namespace

torch::Tensor group_centered(const torch::Tensor& r, int64_t group_size) {
  auto g = grouped(r, group_size);
  return (g - g.mean(1, /*keepdim=*/true)).reshape({-1});
}

torch::Tensor reward_std(const torch::Tensor& r, int64_t group_size, const std::string& scope) {
  auto g = grouped(r, group_size);
  if (scope == "group") {
    return g.std(1, /*unbiased=*/false, /*keepdim=*/true).expand_as(g).reshape({-1});
  }
  if (scope == "step") return r.std(/*unbiased=*/false).expand_as(r);
  throw ConfigError("advantage: std scope must be 'group' or 'step', got '" + scope + "'");
}

torch::Tensor normalized_advantage(const torch::Tensor& r, int64_t group_size,
                                   const std::string& std_scope, double eps) {
  return group_centered(r, group_size) / (reward_std(r, group_size, std_scope) + eps);
}

torch::Tensor clipped_advantage(const torch::Tensor& r, int64_t group_size,
                                const std::string& std_scope, double eps, double a_max) {
  return normalized_advantage(r, group_size, std_scope, eps).clamp(-a_max, a_max);
}

torch::Tensor clipped_surrogate(const torch::Tensor& ratio, const torch::Tensor& A, double c) {
  return torch::max(-A * ratio, -A * torch::clamp(ratio, 1.0 - c, 1.0 + c));
}

}  // namespace ramflow
