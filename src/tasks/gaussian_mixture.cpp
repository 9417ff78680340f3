// Gaussian mixtures and their exact flow-matching velocity (see
// include/ramflow/gaussian_mixture.h).
#include "ramflow/gaussian_mixture.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/errors.h"

namespace ramflow {
namespace {

torch::Tensor to_tensor(const std::vector<double>& v) { return torch::tensor(v, torch::kDouble); }

}  // namespace

void GaussianMixture::validate() const {
  if (!weights.defined() || !means.defined() || !covs.defined())
    throw ConfigError("Gaussian mixture: weights, means and covs must all be given");
  if (weights.dim() != 1 || means.dim() != 2 || covs.dim() != 3 ||
      means.size(0) != weights.size(0) || covs.size(0) != weights.size(0) ||
      covs.size(1) != means.size(1) || covs.size(2) != means.size(1)) {
    std::ostringstream s;
    s << "Gaussian mixture: shapes disagree: weights " << weights.sizes() << ", means "
      << means.sizes() << ", covs " << covs.sizes() << " (expected [M], [M, D], [M, D, D])";
    throw ConfigError(s.str());
  }
  if (weights.size(0) < 1) throw ConfigError("Gaussian mixture: needs at least one component");
  if ((weights < 0).any().item<bool>() || std::abs(weights.sum().item<double>() - 1.0) > 1e-6)
    throw ConfigError("Gaussian mixture: weights must be non-negative and sum to 1");
  if (!torch::allclose(covs, covs.transpose(1, 2)))
    throw ConfigError("Gaussian mixture: covariances must be symmetric");
  auto eig = torch::linalg_eigvalsh(covs, "L");
  if ((eig <= 0).any().item<bool>())
    throw ConfigError("Gaussian mixture: covariances must be positive definite");
}

torch::Tensor GaussianMixture::sample(int64_t n, Rng& rng, const torch::TensorOptions& opts) const {
  auto k = rng.multinomial(weights, n);                                          // [N]
  auto z = rng.randn({n, dim()}, torch::TensorOptions().dtype(torch::kDouble));  // [N, D]
  auto L = torch::linalg_cholesky(covs);                                         // [M, D, D]
  auto x = means.index_select(0, k) +
           torch::matmul(L.index_select(0, k), z.unsqueeze(-1)).squeeze(-1);  // [N, D]
  auto out = x.to(torch::kFloat);
  return opts.has_device() ? out.to(opts.device()) : out;
}

torch::Tensor GaussianMixture::log_prob(const torch::Tensor& x_in) const {
  auto x = x_in.to(torch::kCPU, torch::kDouble);                                  // [N, D]
  auto L = torch::linalg_cholesky(covs);                                          // [M, D, D]
  auto r = x.unsqueeze(1) - means.unsqueeze(0);                                   // [N, M, D]
  auto sol = torch::cholesky_solve(r.unsqueeze(-1), L.unsqueeze(0)).squeeze(-1);  // [N, M, D]
  auto maha = (r * sol).sum(-1);                                                  // [N, M]
  auto logdet = 2.0 * torch::log(torch::diagonal(L, 0, -2, -1)).sum(-1);          // [M]
  const double D = static_cast<double>(dim());
  auto logn = -0.5 * (maha + logdet.unsqueeze(0) + D * std::log(2.0 * M_PI));
  return torch::logsumexp(logn + torch::log(weights).unsqueeze(0), 1);  // [N]
}

nlohmann::json GaussianMixture::to_json() const {
  auto w = weights.contiguous();
  std::vector<double> wv(w.data_ptr<double>(), w.data_ptr<double>() + w.numel());
  nlohmann::json means_j = nlohmann::json::array(), covs_j = nlohmann::json::array();
  for (int64_t k = 0; k < modes(); ++k) {
    auto m = means[k].contiguous();
    means_j.push_back(std::vector<double>(m.data_ptr<double>(), m.data_ptr<double>() + m.numel()));
    nlohmann::json c = nlohmann::json::array();
    for (int64_t i = 0; i < dim(); ++i) {
      auto row = covs[k][i].contiguous();
      c.push_back(std::vector<double>(row.data_ptr<double>(), row.data_ptr<double>() + dim()));
    }
    covs_j.push_back(c);
  }
  return {{"weights", wv}, {"means", means_j}, {"covs", covs_j}};
}

GaussianMixture GaussianMixture::from_json(const nlohmann::json& spec, const std::string& what) {
  SpecReader r(spec, what);
  const auto& means_j = r.value("means");
  if (!means_j.is_array() || means_j.empty())
    throw ConfigError(what + ": 'means' must be a non-empty list of points");
  const int64_t M = static_cast<int64_t>(means_j.size());
  std::vector<double> flat;
  int64_t D = -1;
  for (const auto& m : means_j) {
    std::vector<double> p;
    if (m.is_number()) {
      p = {m.get<double>()};
    } else if (m.is_array() && !m.empty()) {
      for (const auto& v : m) {
        if (!v.is_number()) throw ConfigError(what + ": 'means' entries must be numbers");
        p.push_back(v.get<double>());
      }
    } else {
      throw ConfigError(what + ": each mean must be a number or a list of numbers");
    }
    if (D >= 0 && static_cast<int64_t>(p.size()) != D)
      throw ConfigError(what + ": all means must have the same dimension");
    D = static_cast<int64_t>(p.size());
    flat.insert(flat.end(), p.begin(), p.end());
  }
  GaussianMixture g;
  g.means = to_tensor(flat).reshape({M, D});
  auto w = r.numbers("weights", std::vector<double>(M, 1.0));
  if (static_cast<int64_t>(w.size()) != M)
    throw ConfigError(what + ": 'weights' has " + std::to_string(w.size()) + " entries for " +
                      std::to_string(M) + " means");
  g.weights = to_tensor(w);
  if ((g.weights < 0).any().item<bool>() || g.weights.sum().item<double>() <= 0)
    throw ConfigError(what + ": 'weights' must be non-negative with a positive sum");
  g.weights = g.weights / g.weights.sum();
  if (r.has("covs") && r.has("stds")) throw ConfigError(what + ": give 'stds' or 'covs', not both");
  if (r.has("covs")) {
    const auto& c = r.value("covs");
    try {
      auto v = c.get<std::vector<std::vector<std::vector<double>>>>();
      std::vector<double> cf;
      for (const auto& m : v)
        for (const auto& row : m) cf.insert(cf.end(), row.begin(), row.end());
      if (static_cast<int64_t>(cf.size()) != M * D * D) throw std::runtime_error("size");
      g.covs = to_tensor(cf).reshape({M, D, D});
    } catch (const std::exception&) {
      throw ConfigError(what + ": 'covs' must be " + std::to_string(M) + " matrices of " +
                        std::to_string(D) + "x" + std::to_string(D) + " numbers");
    }
  } else {
    auto s = r.numbers("stds", std::vector<double>{1.0});
    if (s.size() == 1) s.assign(M, s[0]);
    if (static_cast<int64_t>(s.size()) != M)
      throw ConfigError(what + ": 'stds' needs one entry per mean (or a single one)");
    auto sd = to_tensor(s);
    if ((sd <= 0).any().item<bool>()) throw ConfigError(what + ": 'stds' must be positive");
    g.covs = (sd * sd).view({M, 1, 1}) * torch::eye(D, torch::kDouble).unsqueeze(0);
  }
  r.finish();
  g.validate();
  return g;
}

GaussianMixture GaussianMixture::ring(int64_t modes, double radius, double std) {
  auto angle = torch::arange(modes, torch::kDouble) * (2.0 * M_PI / static_cast<double>(modes));
  GaussianMixture g;
  g.weights = torch::full({modes}, 1.0 / static_cast<double>(modes), torch::kDouble);
  g.means = torch::stack({radius * torch::cos(angle), radius * torch::sin(angle)}, 1);  // [M, 2]
  g.covs = (std * std) * torch::eye(2, torch::kDouble).unsqueeze(0).repeat({modes, 1, 1});
  return g;
}

GaussianMixture GaussianMixture::single(const std::vector<double>& mean, double std) {
  const auto D = static_cast<int64_t>(mean.size());
  GaussianMixture g;
  g.weights = torch::ones({1}, torch::kDouble);
  g.means = to_tensor(mean).reshape({1, D});
  g.covs = (std * std) * torch::eye(D, torch::kDouble).unsqueeze(0);
  return g;
}

torch::Tensor mixture_velocity(const GaussianMixture& g, const torch::Tensor& x_in,
                               const torch::Tensor& t_in) {
  const int64_t B = x_in.size(0), D = g.dim();
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == D, "mixture_velocity: x has shape ", x_in.sizes(),
              ", expected [B, ", D, "]");
  auto x = x_in.to(torch::kCPU, torch::kDouble);
  auto t = t_in.to(torch::kCPU, torch::kDouble).reshape({B, 1, 1, 1});  // [B, 1, 1, 1]
  auto a = 1.0 - t;
  auto I = torch::eye(D, torch::kDouble);
  auto S = a * a * g.covs.unsqueeze(0) + t * t * I;  // [B, M, D, D]
  auto L = torch::linalg_cholesky(S);
  auto r = x.unsqueeze(1) - a.squeeze(-1) * g.means.unsqueeze(0);  // [B, M, D]
  auto sol = torch::cholesky_solve(r.unsqueeze(-1), L);            // [B, M, D, 1]  S^-1 r
  // v_k = t S^-1 r - a Sigma_k S^-1 r - mu_k
  auto v_k = (t * sol - a * torch::matmul(g.covs.unsqueeze(0), sol)).squeeze(-1) -
             g.means.unsqueeze(0);                                        // [B, M, D]
  auto maha = (r * sol.squeeze(-1)).sum(-1);                              // [B, M]
  auto logdet = 2.0 * torch::log(torch::diagonal(L, 0, -2, -1)).sum(-1);  // [B, M]
  auto logpost = torch::log(g.weights).unsqueeze(0) - 0.5 * (maha + logdet);
  auto post = torch::softmax(logpost, 1);      // [B, M]
  auto v = (post.unsqueeze(-1) * v_k).sum(1);  // [B, D]
  return v.to(x_in.options());
}

}  // namespace ramflow
