// The list of the core library's built-in rewards: one line per reward (its factory lives in its
// own file); the rewards() registry is defined per library target (reward_registry_core.cpp,
// reward_registry_full.cpp), and make_reward with the score checks here serve both.
#include <cmath>
#include <sstream>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/reward.h"

namespace ramflow {

RewardPtr make_linear_reward(const nlohmann::json& spec, int64_t dim);        // analytic.cpp
RewardPtr make_quadratic_reward(const nlohmann::json& spec, int64_t dim);     // analytic.cpp
RewardPtr make_bump_reward(const nlohmann::json& spec, int64_t dim);          // analytic.cpp
RewardPtr make_weighted_sum_reward(const nlohmann::json& spec, int64_t dim);  // weighted_sum.cpp
RewardPtr make_brightness_reward(const nlohmann::json& spec, int64_t dim);    // brightness.cpp
RewardPtr make_classifier_reward(const nlohmann::json& spec, int64_t dim);    // classifier.cpp
RewardPtr make_remote_reward(const nlohmann::json& spec, int64_t dim);        // remote.cpp

void register_builtin_rewards(Registry<RewardFactory>& r) {
  r.add("linear", make_linear_reward, "a . x  (fields: coef)");
  r.add("quadratic", make_quadratic_reward, "-1/2 (x-c)^T Q (x-c)  (fields: center, q)");
  r.add("bump", make_bump_reward, "h exp(-|x-c|^2 / (2 s^2))  (fields: center, scale, height)");
  r.add("sum", make_weighted_sum_reward, "sum_i w_i r_i  (fields: terms, each with a weight)");
  r.add("brightness", make_brightness_reward,
        "mean of all coordinates: an image's mean intensity (no fields)");
  r.add(
      "classifier", make_classifier_reward,
      "log-probability of the requested class under a learned judge  (fields: checkpoint, class)");
  r.add("remote", make_remote_reward,
        "a reward server over HTTP, protocol ramflow-reward/1 (fields: url, timeout, "
        "connect_timeout, retries, backoff, max_bytes, encoding, token_env)");
}

RewardPtr make_reward(const nlohmann::json& spec, int64_t dim) {
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    throw ConfigError("reward spec must be a JSON object with a string \"type\", got " +
                      spec.dump());
  return rewards().get(spec["type"].get<std::string>())(spec, dim);
}

namespace {
// r checked as the scores of B samples: shape [B], every value finite; -> float32. `what` names it.
torch::Tensor checked(torch::Tensor r, int64_t B, const std::string& what) {
  if (r.dim() != 1 || r.size(0) != B) {
    std::ostringstream s;
    s << what << " returned shape " << r.sizes() << " for " << B << " samples (expected [" << B
      << "])";
    throw NumericalError(s.str());
  }
  r = r.to(torch::kFloat);
  // The index of the first non-finite value, or -1. On the CPU a plain scan: the common case of a
  // small batch would otherwise spend more time in operator dispatch than in the check.
  int64_t bad = -1;
  if (r.device().is_cpu()) {
    const auto rc = r.contiguous();
    const float* p = rc.data_ptr<float>();
    for (int64_t i = 0; i < rc.numel() && bad < 0; ++i)
      if (!std::isfinite(p[i])) bad = i;
  } else if (!torch::isfinite(r).all().item<bool>()) {
    bad = torch::logical_not(torch::isfinite(r)).nonzero()[0][0].item<int64_t>();
  }
  if (bad >= 0)
    throw NumericalError(what + " returned a non-finite value for sample " + std::to_string(bad));
  return r;
}

std::string reward_name(const Reward& reward) {
  return "reward '" + reward.spec().value("type", std::string("?")) + "'";
}
}  // namespace

torch::Tensor score_checked(const Reward& reward, const torch::Tensor& x0, const Condition& cond) {
  torch::NoGradGuard no_grad;
  return checked(reward.score(x0, cond), x0.size(0), reward_name(reward));
}

ScoredBatch score_terms_checked(const Reward& reward, const torch::Tensor& x0,
                                const Condition& cond) {
  torch::NoGradGuard no_grad;
  ScoredBatch out = reward.score_terms(x0, cond);
  out.total = checked(out.total, x0.size(0), reward_name(reward));
  for (auto& [name, r] : out.terms)
    r = checked(r, x0.size(0), reward_name(reward) + " term '" + name + "'");
  return out;
}

torch::Tensor reward_gradient(const Reward& reward, const torch::Tensor& x0,
                              const Condition& cond) {
  const std::string name = reward.spec().value("type", std::string("?"));
  if (!reward.differentiable()) throw ConfigError("reward '" + name + "' is not differentiable");
  torch::AutoGradMode grad_mode(true);
  auto x = x0.detach().requires_grad_(true);
  auto r = reward.score(x, cond);  // [B]
  TORCH_CHECK(r.dim() == 1 && r.size(0) == x0.size(0), "reward '", name, "' returned shape ",
              r.sizes());
  // The rewards of different samples do not interact, so the gradient of their sum is per-sample.
  auto g = torch::autograd::grad({r.sum()}, {x}, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                 /*allow_unused=*/true)[0];
  if (!g.defined()) g = torch::zeros_like(x0);  // a constant reward
  if (!torch::isfinite(g).all().item<bool>())
    throw NumericalError("reward '" + name + "' has a non-finite gradient");
  return g.detach();
}

}  // namespace ramflow
