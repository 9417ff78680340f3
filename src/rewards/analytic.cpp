// Closed-form toy rewards on flattened endpoints x [B, D]:
//   linear     r(x) = a . x
//   quadratic  r(x) = -1/2 (x - c)^T Q (x - c)
//   bump       r(x) = h exp(-|x - c|^2 / (2 s^2))
// All are differentiable; linear and quadratic expose their QuadraticForm for exact tilts.
#include <cmath>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/reward.h"

namespace ramflow {
namespace {

torch::Tensor vec(const std::vector<double>& v) { return torch::tensor(v, torch::kDouble); }

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kCPU, torch::kDouble);
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Reads a D-vector field. A given value needs all D entries (a lone "4" for a 2-D centre is more
// likely a typo than a wish for (4, 4)); only a one-entry default, such as the origin, broadcasts.
torch::Tensor read_point(SpecReader& r, const std::string& key, int64_t dim,
                         std::optional<std::vector<double>> def = std::nullopt) {
  const bool given = r.has(key);
  auto v = r.numbers(key, std::move(def));
  if (!given && v.size() == 1) v.assign(dim, v[0]);
  if (static_cast<int64_t>(v.size()) != dim)
    throw ConfigError(r.what() + ": field '" + key + "' has " + std::to_string(v.size()) +
                      (v.size() == 1 ? " entry" : " entries") + ", the data has dimension " +
                      std::to_string(dim) + " (give all " + std::to_string(dim) +
                      ", comma-separated)");
  return vec(v);
}

torch::Tensor flat(const torch::Tensor& x0) { return x0.reshape({x0.size(0), -1}); }

// A float64 parameter with a float32 CPU copy made once, so that scoring a CPU float32 batch does
// not convert it on every call.
class Param {
 public:
  explicit Param(torch::Tensor f64) : f64_(std::move(f64)), f32_(f64_.to(torch::kFloat)) {}
  const torch::Tensor& f64() const { return f64_; }
  torch::Tensor like(const torch::Tensor& x) const {
    if (x.device().is_cpu() && x.scalar_type() == torch::kFloat) return f32_;
    return f64_.to(x.options());
  }

 private:
  torch::Tensor f64_, f32_;
};

class LinearReward : public Reward {
 public:
  explicit LinearReward(torch::Tensor a) : a_(std::move(a)) {}
  torch::Tensor score(const torch::Tensor& x0, const Condition&) const override {
    return torch::mv(flat(x0), a_.like(x0));
  }
  bool differentiable() const override { return true; }
  std::optional<QuadraticForm> quadratic_form() const override {
    const int64_t D = a_.f64().size(0);
    return QuadraticForm{torch::zeros({D, D}, torch::kDouble), a_.f64(), 0.0};
  }
  nlohmann::json spec() const override {
    return {{"type", "linear"}, {"coef", to_vector(a_.f64())}};
  }

 private:
  Param a_;  // [D]
};

class QuadraticReward : public Reward {
 public:
  QuadraticReward(torch::Tensor c, torch::Tensor Q) : c_(std::move(c)), Q_(std::move(Q)) {}
  torch::Tensor score(const torch::Tensor& x0, const Condition&) const override {
    auto d = flat(x0) - c_.like(x0);  // [B, D]
    return -0.5 * (torch::matmul(d, Q_.like(x0)) * d).sum(1);
  }
  bool differentiable() const override { return true; }
  std::optional<QuadraticForm> quadratic_form() const override {
    // -1/2 (x-c)^T Q (x-c) = -1/2 x^T Q x + (Qc)^T x - 1/2 c^T Q c
    const auto &Q = Q_.f64(), &c = c_.f64();
    return QuadraticForm{Q, torch::mv(Q, c), -0.5 * torch::dot(c, torch::mv(Q, c)).item<double>()};
  }
  nlohmann::json spec() const override {
    nlohmann::json q = nlohmann::json::array();
    for (int64_t i = 0; i < Q_.f64().size(0); ++i) q.push_back(to_vector(Q_.f64()[i]));
    return {{"type", "quadratic"}, {"center", to_vector(c_.f64())}, {"q", q}};
  }

 private:
  Param c_;  // [D]
  Param Q_;  // [D, D]
};

class BumpReward : public Reward {
 public:
  BumpReward(torch::Tensor c, double s, double h) : c_(std::move(c)), s_(s), h_(h) {}
  torch::Tensor score(const torch::Tensor& x0, const Condition&) const override {
    auto d2 = (flat(x0) - c_.like(x0)).square().sum(1);  // [B]
    return torch::exp(d2 * (-0.5 / (s_ * s_))) * h_;
  }
  bool differentiable() const override { return true; }
  nlohmann::json spec() const override {
    return {{"type", "bump"}, {"center", to_vector(c_.f64())}, {"scale", s_}, {"height", h_}};
  }

 private:
  Param c_;
  double s_, h_;
};

}  // namespace

RewardPtr make_linear_reward(const nlohmann::json& spec, int64_t dim) {
  SpecReader r(spec, "reward 'linear'");
  r.text("type");
  auto a = read_point(r, "coef", dim);
  r.finish();
  return std::make_shared<LinearReward>(a);
}

RewardPtr make_quadratic_reward(const nlohmann::json& spec, int64_t dim) {
  SpecReader r(spec, "reward 'quadratic'");
  r.text("type");
  auto c = read_point(r, "center", dim, std::vector<double>{0.0});
  torch::Tensor Q;
  const auto& q = r.has("q") ? r.value("q") : nlohmann::json(1.0);
  if (q.is_number()) {
    Q = q.get<double>() * torch::eye(dim, torch::kDouble);
  } else if (q.is_array() && !q.empty() && q[0].is_number()) {
    auto d = q.get<std::vector<double>>();
    if (static_cast<int64_t>(d.size()) != dim)
      throw ConfigError("reward 'quadratic': 'q' as a diagonal needs " + std::to_string(dim) +
                        " entries");
    Q = torch::diag(vec(d));
  } else {
    try {
      auto m = q.get<std::vector<std::vector<double>>>();
      std::vector<double> f;
      for (const auto& row : m) f.insert(f.end(), row.begin(), row.end());
      if (static_cast<int64_t>(m.size()) != dim || static_cast<int64_t>(f.size()) != dim * dim)
        throw std::runtime_error("size");
      Q = vec(f).reshape({dim, dim});
    } catch (const std::exception&) {
      throw ConfigError("reward 'quadratic': 'q' must be a number, a diagonal of " +
                        std::to_string(dim) + " numbers, or a " + std::to_string(dim) + "x" +
                        std::to_string(dim) + " matrix");
    }
  }
  if (!torch::allclose(Q, Q.t())) throw ConfigError("reward 'quadratic': 'q' must be symmetric");
  r.finish();
  return std::make_shared<QuadraticReward>(c, Q);
}

RewardPtr make_bump_reward(const nlohmann::json& spec, int64_t dim) {
  SpecReader r(spec, "reward 'bump'");
  r.text("type");
  auto c = read_point(r, "center", dim);
  double s = r.number("scale", 1.0);
  double h = r.number("height", 1.0);
  if (!(s > 0)) throw ConfigError("reward 'bump': 'scale' must be > 0");
  r.finish();
  return std::make_shared<BumpReward>(c, s, h);
}

}  // namespace ramflow
