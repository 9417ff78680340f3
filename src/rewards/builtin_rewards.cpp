// The list of built-in rewards: one line per reward (its factory lives in its own file).
#include <sstream>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/reward.h"

namespace ramflow {

RewardPtr make_linear_reward(const nlohmann::json& spec, int64_t dim);        // analytic.cpp
RewardPtr make_quadratic_reward(const nlohmann::json& spec, int64_t dim);     // analytic.cpp
RewardPtr make_bump_reward(const nlohmann::json& spec, int64_t dim);          // analytic.cpp
RewardPtr make_weighted_sum_reward(const nlohmann::json& spec, int64_t dim);  // weighted_sum.cpp

namespace {

void register_builtin_rewards(Registry<RewardFactory>& r) {
  r.add("linear", make_linear_reward, "a . x  (fields: coef)");
  r.add("quadratic", make_quadratic_reward, "-1/2 (x-c)^T Q (x-c)  (fields: center, q)");
  r.add("bump", make_bump_reward, "h exp(-|x-c|^2 / (2 s^2))  (fields: center, scale, height)");
  r.add("sum", make_weighted_sum_reward, "sum_i w_i r_i  (fields: terms, each with a weight)");
}

}  // namespace

const Registry<RewardFactory>& rewards() {
  static const Registry<RewardFactory> registry = [] {
    Registry<RewardFactory> r("reward");
    register_builtin_rewards(r);
    return r;
  }();
  return registry;
}

RewardPtr make_reward(const nlohmann::json& spec, int64_t dim) {
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    throw ConfigError("reward spec must be a JSON object with a string \"type\", got " + spec.dump());
  return rewards().get(spec["type"].get<std::string>())(spec, dim);
}

torch::Tensor score_checked(const Reward& reward, const torch::Tensor& x0, const torch::Tensor& cond) {
  torch::NoGradGuard no_grad;
  auto r = reward.score(x0, cond);
  if (r.dim() != 1 || r.size(0) != x0.size(0)) {
    std::ostringstream s;
    s << "reward '" << reward.spec().value("type", "?") << "' returned shape " << r.sizes()
      << " for " << x0.size(0) << " samples (expected [" << x0.size(0) << "])";
    throw NumericalError(s.str());
  }
  if (!torch::isfinite(r).all().item<bool>()) {
    auto i = torch::logical_not(torch::isfinite(r)).nonzero()[0][0].item<int64_t>();
    throw NumericalError("reward '" + reward.spec().value("type", std::string("?")) +
                         "' returned a non-finite value for sample " + std::to_string(i));
  }
  return r.to(torch::kFloat);
}

}  // namespace ramflow
