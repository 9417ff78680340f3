// Weighted sum of rewards: r(x) = sum_i w_i r_i(x).
// Spec: {"type": "sum", "terms": [{"weight": w_i, "type": ..., ...fields of r_i}, ...]}.
// Differentiable iff every term is; a quadratic form iff every term has one (forms add linearly).
#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/reward.h"

namespace ramflow {
namespace {

class WeightedSumReward : public Reward {
 public:
  WeightedSumReward(std::vector<RewardPtr> terms, std::vector<double> weights)
      : terms_(std::move(terms)), weights_(std::move(weights)) {}

  torch::Tensor score(const torch::Tensor& x0, const torch::Tensor& cond) const override {
    torch::Tensor total;
    for (size_t i = 0; i < terms_.size(); ++i) {
      auto r = weights_[i] * terms_[i]->score(x0, cond);
      total = total.defined() ? total + r : r;
    }
    return total;
  }
  bool differentiable() const override {
    for (const auto& t : terms_)
      if (!t->differentiable()) return false;
    return true;
  }
  std::optional<QuadraticForm> quadratic_form() const override {
    QuadraticForm sum;
    for (size_t i = 0; i < terms_.size(); ++i) {
      auto f = terms_[i]->quadratic_form();
      if (!f) return std::nullopt;
      const double w = weights_[i];
      sum.Q = sum.Q.defined() ? sum.Q + w * f->Q : w * f->Q;
      sum.b = sum.b.defined() ? sum.b + w * f->b : w * f->b;
      sum.c += w * f->c;
    }
    return sum;
  }
  nlohmann::json spec() const override {
    nlohmann::json terms = nlohmann::json::array();
    for (size_t i = 0; i < terms_.size(); ++i) {
      auto s = terms_[i]->spec();
      s["weight"] = weights_[i];
      terms.push_back(s);
    }
    return {{"type", "sum"}, {"terms", terms}};
  }

 private:
  std::vector<RewardPtr> terms_;
  std::vector<double> weights_;
};

}  // namespace

RewardPtr make_weighted_sum_reward(const nlohmann::json& spec, int64_t dim) {
  SpecReader r(spec, "reward 'sum'");
  r.text("type");
  const auto& terms = r.value("terms");
  r.finish();
  if (!terms.is_array() || terms.empty())
    throw ConfigError("reward 'sum': 'terms' must be a non-empty list of reward specs");
  std::vector<RewardPtr> parts;
  std::vector<double> weights;
  for (size_t i = 0; i < terms.size(); ++i) {
    nlohmann::json term = terms[i];
    if (!term.is_object())
      throw ConfigError("reward 'sum': term " + std::to_string(i) + " is not a JSON object");
    double w = 1.0;
    if (term.contains("weight")) {
      if (!term["weight"].is_number())
        throw ConfigError("reward 'sum': term " + std::to_string(i) + ": 'weight' must be a number");
      w = term["weight"].get<double>();
      term.erase("weight");
    }
    parts.push_back(make_reward(term, dim));
    weights.push_back(w);
  }
  return std::make_shared<WeightedSumReward>(std::move(parts), std::move(weights));
}

}  // namespace ramflow
