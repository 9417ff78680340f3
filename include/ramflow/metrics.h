#pragma once
// Sample metrics for comparing a model's samples with a (possibly weighted) target sample.
#include <cmath>
#include <vector>

#include <torch/types.h>

namespace ramflow {

/// Energy distance between samples x [N, D] and a weighted sample y [M, D] (weights w [M] summing
/// to 1; undefined w = uniform):
///   ED = 2 E|X - Y| - E|X - X'| - E|Y - Y'|   (>= 0, zero iff the laws agree)
/// E|X - X'| is the unbiased U-statistic; E|Y - Y'| excludes the diagonal and renormalises by
/// 1 - sum w^2. Computed in chunks, accumulated in float64.
double energy_distance(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& w = {});

/// E|Y - Y'| for a weighted sample (the target's self term, cacheable).
double mean_pair_distance(const torch::Tensor& y, const torch::Tensor& w = {});
/// E|X - Y| for unweighted x and weighted y.
double mean_cross_distance(const torch::Tensor& x, const torch::Tensor& y,
                           const torch::Tensor& w = {});

/// Fraction of (weighted) samples whose nearest centre is each of centers [M, D].  -> [M], float64
torch::Tensor mode_masses(const torch::Tensor& x, const torch::Tensor& centers,
                          const torch::Tensor& w = {});

/// 1 / sum w^2 for weights summing to 1.
double effective_sample_size(const torch::Tensor& w);

/// Summary statistics of the finite values among a list (non-finite ones are skipped and not
/// counted).
struct MeanStd {
  int64_t n = 0;  // finite values
  double mean = std::nan(""),
         std = std::nan("");  // std: unbiased (n - 1); 0 for one value; NaN for none
  double min = std::nan(""), max = std::nan("");
};
/// Welford's one-pass recurrence: mean_k = mean_{k-1} + (v_k - mean_{k-1}) / k,
/// M2_k = M2_{k-1} + (v_k - mean_{k-1}) (v_k - mean_k), std = sqrt(M2_n / (n - 1)).
MeanStd mean_std(const std::vector<double>& values);

}  // namespace ramflow
