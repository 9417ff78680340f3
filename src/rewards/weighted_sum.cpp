// Weighted sum of rewards: r(x) = sum_i w_i r_i(x).
// Spec: {"type": "sum", "terms": [{"weight": w_i, "name": n_i, "type": ..., ...fields of r_i},
// ...]}. Each term is logged on its own (unweighted) under its name: "name" if given, else its type
// (with
// "#2", "#3", ... on repeats); a term's own parts (a remote reward's sub-scores) as
// "<name>/<part>". Differentiable iff every term is; a quadratic form iff every term has one (forms
// add linearly).
#include <algorithm>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/reward.h"

namespace ramflow {
namespace {

class WeightedSumReward : public Reward {
 public:
  WeightedSumReward(std::vector<RewardPtr> terms, std::vector<double> weights,
                    std::vector<std::string> names, std::vector<bool> named)
      : terms_(std::move(terms)),
        weights_(std::move(weights)),
        names_(std::move(names)),
        named_(std::move(named)) {}

  torch::Tensor score(const torch::Tensor& x0, const Condition& cond) const override {
    return score_terms(x0, cond).total;  // (differentiable terms keep their graph through it)
  }
  ScoredBatch score_terms(const torch::Tensor& x0, const Condition& cond) const override {
    ScoredBatch out;
    for (size_t i = 0; i < terms_.size(); ++i) {
      ScoredBatch part = terms_[i]->score_terms(x0, cond);
      auto r = weights_[i] * part.total;
      out.total = out.total.defined() ? out.total + r : r;
      out.terms[names_[i]] = part.total;
      for (auto& [name, t] : part.terms) out.terms[names_[i] + "/" + name] = t;
    }
    return out;
  }
  bool overlap() const override {
    for (const auto& t : terms_)
      if (t->overlap()) return true;
    return false;
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
      if (named_[i]) s["name"] = names_[i];
      terms.push_back(s);
    }
    return {{"type", "sum"}, {"terms", terms}};
  }

 private:
  std::vector<RewardPtr> terms_;
  std::vector<double> weights_;
  std::vector<std::string> names_;
  std::vector<bool> named_;  // the name was given in the spec
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
  std::vector<std::string> names;
  std::vector<bool> named;
  for (size_t i = 0; i < terms.size(); ++i) {
    nlohmann::json term = terms[i];
    if (!term.is_object())
      throw ConfigError("reward 'sum': term " + std::to_string(i) + " is not a JSON object");
    double w = 1.0;
    if (term.contains("weight")) {
      if (!term["weight"].is_number())
        throw ConfigError("reward 'sum': term " + std::to_string(i) +
                          ": 'weight' must be a number");
      w = term["weight"].get<double>();
      term.erase("weight");
    }
    std::string name;
    if (term.contains("name")) {
      if (!term["name"].is_string() || term["name"].get<std::string>().empty())
        throw ConfigError("reward 'sum': term " + std::to_string(i) +
                          ": 'name' must be a non-empty string");
      name = term["name"].get<std::string>();
      term.erase("name");
      if (std::find(names.begin(), names.end(), name) != names.end())
        throw ConfigError("reward 'sum': two terms are named '" + name + "'");
      named.push_back(true);
    } else {
      const std::string type = term.contains("type") && term["type"].is_string()
                                   ? term["type"].get<std::string>()
                                   : std::string("term");
      name = type;
      for (int k = 2; std::find(names.begin(), names.end(), name) != names.end(); ++k)
        name = type + "#" + std::to_string(k);
      named.push_back(false);
    }
    names.push_back(name);
    parts.push_back(make_reward(term, dim));
    weights.push_back(w);
  }
  return std::make_shared<WeightedSumReward>(std::move(parts), std::move(weights), std::move(names),
                                             std::move(named));
}

}  // namespace ramflow
