#pragma once
// Image evaluation: what a post-trained image model is graded on, by an evaluation classifier that
// is not the reward's judge (classifier.h), against the task's test split.
//   accuracy            fraction of samples the evaluation classifier assigns to their requested
//   class frechet_distance    ||mu_s - mu_d||^2 + tr(C_s + C_d - 2 (C_d^{1/2} C_s C_d^{1/2})^{1/2})
//   between
//                       Gaussians fitted to the evaluation classifier's features (128-d) of the
//                       samples (s) and of the test split (d): FID's formula in this classifier's
//                       feature space; overall, and per class (samples of class k against test
//                       images of class k)
//   diversity           mean pairwise Euclidean distance of the features within a class, averaged
//                       over the classes present (collapse onto one image per class drives it to 0)
//   hacking indicators  mean_intensity: mean pixel in [0, 1] ((x + 1) / 2); saturated_fraction:
//   pixels with
//                       |x| > 0.95 (near black or white); edge_density: pixels whose gradient
//                       magnitude |I(y, x+1) - I(y, x)| + |I(y+1, x) - I(y, x)| on [0, 1]
//                       intensities exceeds 0.1
// Sample counts per class are small (tens to hundreds), so per-class Fréchet distances carry a
// positive bias that shrinks with more samples: compare models at equal counts.
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ramflow/classifier.h"
#include "ramflow/task.h"

namespace ramflow {

struct ImageMetrics {
  double accuracy = 0;
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
  /// `classifier` grades; the feature statistics of `test` (all of it, and per class) are computed
  /// once.
  ImageJudge(ImageClassifier classifier, const Task::Split& test);
  /// Grades samples x [N, C, H, W] requested as `labels` [N].
  ImageMetrics measure(const torch::Tensor& x, const torch::Tensor& labels) const;
  int64_t num_classes() const { return classifier_->options().num_classes(); }

 private:
  torch::Tensor features(const torch::Tensor& x) const;  // [N, 128] float64, CPU
  mutable ImageClassifier classifier_;  // a holder: forward() is not const, grading changes nothing
  torch::Tensor mu_, cov_;              // of all test features
  std::vector<torch::Tensor> class_mu_, class_cov_;  // per class
};

}  // namespace ramflow
