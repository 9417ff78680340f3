// Sample metrics against known values.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/metrics.h"
#include "ramflow/rng.h"

namespace ramflow {
namespace {

// E|Z| for Z ~ N(mu, sigma^2).
double mean_abs_normal(double mu, double sigma) {
  return sigma * std::sqrt(2.0 / M_PI) * std::exp(-mu * mu / (2 * sigma * sigma)) +
         mu * std::erf(mu / (sigma * std::sqrt(2.0)));
}

TEST(MetricsTest, EnergyDistanceOfShiftedGaussiansHasItsClosedForm) {
  // X ~ N(0, 1), Y ~ N(d, 1): ED = 2 E|N(d, 2)| - 2 E|N(0, 2)|.
  Rng rng(8);
  const double d = 1.0;
  auto x = rng.randn({6000, 1});
  auto y = rng.randn({6000, 1}) + d;
  const double exact =
      2 * mean_abs_normal(d, std::sqrt(2.0)) - 2 * mean_abs_normal(0, std::sqrt(2.0));
  EXPECT_NEAR(energy_distance(x, y), exact, 0.05) << "exact " << exact;
  // Same law: close to zero (the U-statistics make it unbiased).
  EXPECT_NEAR(energy_distance(x, rng.randn({6000, 1})), 0.0, 0.01);
}

TEST(MetricsTest, WeightedTargetEqualsResampledTarget) {
  // Weights that double-count a sample equal duplicating it.
  auto y = torch::tensor({{0.0f}, {1.0f}, {3.0f}});
  auto w = torch::tensor({0.25, 0.5, 0.25}, torch::kDouble);
  auto y_dup = torch::tensor({{0.0f}, {1.0f}, {1.0f}, {3.0f}});
  auto x = torch::tensor({{0.5f}, {2.0f}});
  EXPECT_NEAR(mean_cross_distance(x, y, w), mean_cross_distance(x, y_dup), 1e-6);
  // Pair term: V-statistic of the duplicated set renormalised off the diagonal.
  double v = 0;
  const double p[] = {0, 1, 3}, q[] = {0.25, 0.5, 0.25};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) v += q[i] * q[j] * std::abs(p[i] - p[j]);
  EXPECT_NEAR(mean_pair_distance(y, w), v / (1 - (0.0625 + 0.25 + 0.0625)), 1e-6);
}

TEST(MetricsTest, ModeMassesAndESS) {
  auto centers = torch::tensor({{0.0f, 0.0f}, {10.0f, 0.0f}});
  auto x = torch::tensor({{0.1f, 0.0f}, {9.0f, 1.0f}, {8.0f, 0.0f}, {-1.0f, 0.0f}});
  auto m = mode_masses(x, centers);
  EXPECT_DOUBLE_EQ(m[0].item<double>(), 0.5);
  auto mw = mode_masses(x, centers, torch::tensor({0.7, 0.1, 0.1, 0.1}, torch::kDouble));
  EXPECT_NEAR(mw[0].item<double>(), 0.8, 1e-12);
  EXPECT_NEAR(effective_sample_size(torch::full({50}, 0.02, torch::kDouble)), 50.0, 1e-9);
  EXPECT_NEAR(effective_sample_size(torch::tensor({1.0, 0.0}, torch::kDouble)), 1.0, 1e-12);
}

TEST(MetricsTest, MeanStdSkipsNonFiniteValues) {
  // {1, 2, 4}: mean 7/3, unbiased variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3.
  const MeanStd s = mean_std({1.0, std::nan(""), 2.0, 4.0, INFINITY});
  EXPECT_EQ(s.n, 3);
  EXPECT_NEAR(s.mean, 7.0 / 3.0, 1e-15);
  EXPECT_NEAR(s.std, std::sqrt(7.0 / 3.0), 1e-15);
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.max, 4.0);
  EXPECT_EQ(mean_std({5.0}).std, 0.0);
  EXPECT_EQ(mean_std({}).n, 0);
  EXPECT_TRUE(std::isnan(mean_std({std::nan("")}).mean));
}

}  // namespace
}  // namespace ramflow
