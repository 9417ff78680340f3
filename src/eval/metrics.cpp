// Sample metrics (see include/ramflow/metrics.h).
#include "ramflow/metrics.h"

#include <torch/torch.h>

namespace ramflow {
namespace {

constexpr int64_t kChunk = 512;  // rows per cdist block: 512 x N floats at a time

torch::Tensor flat_cpu(const torch::Tensor& x) {
  return x.detach().to(torch::kCPU, torch::kFloat).reshape({x.size(0), -1}).contiguous();
}

torch::Tensor uniform_or(const torch::Tensor& w, int64_t n) {
  if (w.defined()) return w.detach().to(torch::kCPU, torch::kDouble);
  return torch::full({n}, 1.0 / static_cast<double>(n), torch::kDouble);
}

// sum_{i,j} a_i b_j |x_i - y_j| over all pairs, blockwise; a, b float64.
double weighted_pair_sum(const torch::Tensor& x, const torch::Tensor& a, const torch::Tensor& y,
                         const torch::Tensor& b) {
  double total = 0.0;
  auto bf = b.to(torch::kFloat);
  for (int64_t i = 0; i < x.size(0); i += kChunk) {
    const int64_t n = std::min(kChunk, x.size(0) - i);
    auto d = torch::cdist(x.narrow(0, i, n), y);     // [n, M]
    auto row = torch::mv(d, bf).to(torch::kDouble);  // [n]
    total += torch::dot(row, a.narrow(0, i, n)).item<double>();
  }
  return total;
}

}  // namespace

double mean_pair_distance(const torch::Tensor& y_in, const torch::Tensor& w_in) {
  auto y = flat_cpu(y_in);
  TORCH_CHECK(y.size(0) >= 2, "mean_pair_distance: needs at least 2 samples");
  auto w = uniform_or(w_in, y.size(0));
  // The diagonal contributes |y_i - y_i| = 0, so the full sum is the off-diagonal sum.
  const double off = weighted_pair_sum(y, w, y, w);
  return off / (1.0 - w.pow(2).sum().item<double>());
}

double mean_cross_distance(const torch::Tensor& x_in, const torch::Tensor& y_in,
                           const torch::Tensor& w_in) {
  auto x = flat_cpu(x_in), y = flat_cpu(y_in);
  TORCH_CHECK(x.size(1) == y.size(1), "energy distance: x has dimension ", x.size(1), ", y has ",
              y.size(1));
  auto a = uniform_or({}, x.size(0));
  auto w = uniform_or(w_in, y.size(0));
  return weighted_pair_sum(x, a, y, w);
}

double energy_distance(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& w) {
  return 2.0 * mean_cross_distance(x, y, w) - mean_pair_distance(x) - mean_pair_distance(y, w);
}

torch::Tensor mode_masses(const torch::Tensor& x_in, const torch::Tensor& centers,
                          const torch::Tensor& w_in) {
  auto x = flat_cpu(x_in);
  auto c = centers.detach().to(torch::kCPU, torch::kFloat).reshape({centers.size(0), -1});
  auto w = uniform_or(w_in, x.size(0));
  auto nearest = torch::cdist(x, c).argmin(1);  // [N]
  auto masses = torch::zeros({c.size(0)}, torch::kDouble);
  masses.index_add_(0, nearest, w);
  return masses / w.sum();
}

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd s;
  double mean = 0, m2 = 0;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    ++s.n;
    const double delta = v - mean;
    mean += delta / static_cast<double>(s.n);
    m2 += delta * (v - mean);
    s.min = s.n == 1 ? v : std::min(s.min, v);
    s.max = s.n == 1 ? v : std::max(s.max, v);
  }
  if (s.n == 0) return s;
  s.mean = mean;
  s.std = s.n > 1 ? std::sqrt(m2 / static_cast<double>(s.n - 1)) : 0.0;
  return s;
}

double effective_sample_size(const torch::Tensor& w) {
  return 1.0 / w.detach().to(torch::kDouble).pow(2).sum().item<double>();
}

}  // namespace ramflow
