// Image evaluation (see include/ramflow/image_metrics.h).
#include "ramflow/image_metrics.h"

#include <cmath>

#include <torch/torch.h>

namespace ramflow {
namespace {

// Symmetric square root of a PSD matrix: V diag(sqrt(max(l, 0))) V^T.
torch::Tensor sqrtm_psd(const torch::Tensor& a) {
  auto [l, v] = torch::linalg_eigh(a, "L");
  return torch::matmul(v * l.clamp_min(0).sqrt().unsqueeze(0), v.transpose(0, 1));
}

void mean_cov(const torch::Tensor& f, torch::Tensor& mu, torch::Tensor& cov) {
  mu = f.mean(0);
  auto c = f - mu;
  cov = torch::matmul(c.transpose(0, 1), c) /
        static_cast<double>(std::max<int64_t>(f.size(0) - 1, 1));
}

}  // namespace

double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& c1, const torch::Tensor& mu2,
                        const torch::Tensor& c2) {
  auto m1 = mu1.to(torch::kDouble), m2 = mu2.to(torch::kDouble);
  auto a = c1.to(torch::kDouble), b = c2.to(torch::kDouble);
  // tr((A^{1/2} B A^{1/2})^{1/2}) = sum of sqrt of the eigenvalues of the symmetric A^{1/2} B
  // A^{1/2}.
  auto s = sqrtm_psd(a);
  auto inner = torch::matmul(torch::matmul(s, b), s);
  inner = 0.5 * (inner + inner.transpose(0, 1));
  const double cross = torch::linalg_eigvalsh(inner, "L").clamp_min(0).sqrt().sum().item<double>();
  const double d = (m1 - m2).square().sum().item<double>() + a.trace().item<double>() +
                   b.trace().item<double>() - 2.0 * cross;
  return std::max(d, 0.0);
}

std::map<std::string, double> hacking_indicators(const torch::Tensor& x) {
  auto i = (x.detach().to(torch::kCPU, torch::kDouble) + 1.0) * 0.5;  // [N, C, H, W] in [0, 1]
  auto gx = (i.narrow(3, 1, i.size(3) - 1) - i.narrow(3, 0, i.size(3) - 1))
                .abs()
                .narrow(2, 0, i.size(2) - 1);
  auto gy = (i.narrow(2, 1, i.size(2) - 1) - i.narrow(2, 0, i.size(2) - 1))
                .abs()
                .narrow(3, 0, i.size(3) - 1);
  return {
      {"mean_intensity", i.mean().item<double>()},
      {"saturated_fraction", x.detach().abs().gt(0.95).to(torch::kDouble).mean().item<double>()},
      {"edge_density", (gx + gy).gt(0.1).to(torch::kDouble).mean().item<double>()}};
}

namespace {

// Grades images x [N, C, H, W] with their features f [N, F] against the test statistics (all of
// it: test_mu, test_cov; per class: class_mu, class_cov, empty for a text reader).
ImageMetrics grade(const Grader& grader, const torch::Tensor& x, const torch::Tensor& f,
                   const Condition& cond, const torch::Tensor& test_mu,
                   const torch::Tensor& test_cov, const std::vector<torch::Tensor>& class_mu,
                   const std::vector<torch::Tensor>& class_cov) {
  ImageMetrics out;
  out.rate_name = grader.rate_name();
  out.accuracy = grader.correct(x, f, cond).to(torch::kDouble).mean().item<double>();
  torch::Tensor mu, cov;
  mean_cov(f, mu, cov);
  out.frechet_distance = frechet_distance(mu, cov, test_mu, test_cov);
  const auto ids = cond.id().to(torch::kCPU, torch::kLong);  // [N]
  for (int64_t k = 0; k < static_cast<int64_t>(class_mu.size()); ++k) {
    auto idx = (ids == k).nonzero().flatten();
    if (idx.size(0) < 2 || !class_mu[static_cast<size_t>(k)].defined()) {
      out.frechet_per_class.push_back(std::nan(""));
      continue;
    }
    torch::Tensor mk, ck;
    mean_cov(f.index_select(0, idx), mk, ck);
    out.frechet_per_class.push_back(frechet_distance(mk, ck, class_mu[static_cast<size_t>(k)],
                                                     class_cov[static_cast<size_t>(k)]));
  }
  // Within-condition diversity: the mean over distinct pairs of ||f_i - f_j|| of each condition
  // with two samples or more, averaged over those conditions.
  auto [unique, inverse] = torch::_unique(ids, /*sorted=*/true, /*return_inverse=*/true);
  double diversity = 0;
  int64_t groups = 0;
  for (int64_t g = 0; g < unique.size(0); ++g) {
    auto idx = (inverse == g).nonzero().flatten();
    if (idx.size(0) < 2) continue;
    auto fk = f.index_select(0, idx);
    const double n = static_cast<double>(fk.size(0));
    diversity += torch::cdist(fk, fk).sum().item<double>() / (n * (n - 1));
    ++groups;
  }
  out.diversity = groups > 0 ? diversity / static_cast<double>(groups) : 0.0;
  const auto h = hacking_indicators(x);
  out.mean_intensity = h.at("mean_intensity");
  out.saturated_fraction = h.at("saturated_fraction");
  out.edge_density = h.at("edge_density");
  return out;
}

}  // namespace

ImageJudge::ImageJudge(GraderPtr grader, const Task::Split& test) : grader_(std::move(grader)) {
  TORCH_CHECK(grader_, "ImageJudge: no grader");
  auto f = grader_->features(test.x);  // [N, F]
  mean_cov(f, mu_, cov_);
  if (grader_->num_classes() > 0) {
    const auto labels = labels_of(test.cond, test.x.size(0), "ImageJudge's test split");  // [N]
    for (int64_t k = 0; k < grader_->num_classes(); ++k) {
      auto idx = (labels == k).nonzero().flatten();
      torch::Tensor mu, cov;
      if (idx.size(0) >= 2) mean_cov(f.index_select(0, idx), mu, cov);
      class_mu_.push_back(mu);
      class_cov_.push_back(cov);
    }
  }
  data_ = grade(*grader_, test.x, f, test.cond, mu_, cov_, class_mu_, class_cov_);
}

ImageMetrics ImageJudge::measure(const torch::Tensor& x, const Condition& cond) const {
  TORCH_CHECK(x.dim() == 4 && cond.size() == x.size(0),
              "ImageJudge: images [N, C, H, W] with N conditions expected, got ", x.sizes(),
              " and ", cond.size(), " conditions");
  return grade(*grader_, x, grader_->features(x), cond, mu_, cov_, class_mu_, class_cov_);
}

}  // namespace ramflow
