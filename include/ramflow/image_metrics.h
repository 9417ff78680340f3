#pragma once
// Image evaluation: what a post-trained image model is graded on, by a judge that is not the
// reward (grader.h: an evaluation classifier, or the words task's text reader), against the task's
// test split.
//   accuracy            the fraction of samples the judge finds correct (grader.h): a classifier's
//                       most likely class is the requested one ("accuracy"), a reader reads
//                       exactly the requested word ("exact_match")
//   frechet_distance    ||mu_s - mu_d||^2 + tr(C_s + C_d - 2 (C_d^{1/2} C_s C_d^{1/2})^{1/2})
//                       between Gaussians fitted to the judge's features of the samples (s) and of
//                       the test split (d): FID's formula in this judge's feature space; overall,
//                       and for a classifier per class (samples of class k against test images of
//                       class k)
//   diversity           mean pairwise Euclidean distance of the features within a condition (a
//                       class, a word), averaged over the conditions with two samples or more
//                       (collapse onto one image per condition drives it to 0)
//   hacking indicators  mean_intensity: mean pixel in [0, 1] ((x + 1) / 2); saturated_fraction:
//                       pixels with |x| > 0.95 (near black or white); edge_density: pixels whose
//                       gradient magnitude |I(y, x+1) - I(y, x)| + |I(y+1, x) - I(y, x)| on [0, 1]
//                       intensities exceeds 0.1
// Sample counts per class are small (tens to hundreds), so per-class Fréchet distances carry a
// positive bias that shrinks with more samples: compare models at equal counts.
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ramflow/grader.h"
#include "ramflow/task.h"

namespace ramflow {

struct ImageMetrics {
  double accuracy = 0;                 // the judge's rate of correct samples
  std::string rate_name = "accuracy";  // its name (Grader::rate_name): accuracy, exact_match
  double frechet_distance = 0;
  std::vector<double> frechet_per_class;  // [K] (NaN for a class with fewer than 2 samples)
  double diversity = 0;
  double mean_intensity = 0, saturated_fraction = 0, edge_density = 0;
};

/// The Fréchet distance between N(mu1, c1) and N(mu2, c2) (float64; the matrix square roots by
/// symmetric eigendecomposition, negative eigenvalues from rounding clipped to 0).
double frechet_distance(const torch::Tensor& mu1, const torch::Tensor& c1, const torch::Tensor& mu2,
                        const torch::Tensor& c2);

/// The hacking indicators of images x [N, C, H, W] in [-1, 1]: {mean_intensity, saturated_fraction,
/// edge_density}.
std::map<std::string, double> hacking_indicators(const torch::Tensor& x);

class ImageJudge {
 public:
  /// `grader` grades; the feature statistics of `test` (all of it, and per class for a classifier)
  /// are computed once.
  ImageJudge(GraderPtr grader, const Task::Split& test);
  /// Grades samples x [N, C, H, W] requested with `cond` (N conditions).
  ImageMetrics measure(const torch::Tensor& x, const Condition& cond) const;
  /// The test split graded as samples (measured once): the judge's rate and the diversity of the
  /// data itself, the reference a model's are read against (its Fréchet distance is 0).
  const ImageMetrics& data() const { return data_; }

 private:
  GraderPtr grader_;
  ImageMetrics data_;
  torch::Tensor mu_, cov_;                           // of all test features
  std::vector<torch::Tensor> class_mu_, class_cov_;  // per class (a classifier's)
};

}  // namespace ramflow
