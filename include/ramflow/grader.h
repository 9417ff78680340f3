#pragma once
// What grades images in evaluation (image_metrics.h's ImageJudge), a model that the training reward
// never sees:
//   * an image classifier (classifier.h): features = its 128-d penultimate layer; a sample is
//     correct when the classifier's most likely class is the requested one ("accuracy");
//   * a text reader (char_reader.h, the words task's second judge): features = its column
//     features averaged over the columns; a sample is correct when the reader reads exactly the
//     requested word ("exact_match").
// A judge file is either kind: load_grader tells them apart by their metadata.
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ramflow/char_reader.h"
#include "ramflow/classifier.h"
#include "ramflow/condition.h"

namespace ramflow {

class Grader {
 public:
  virtual ~Grader() = default;
  /// The name of the rate `correct` measures, as results show it: "accuracy", "exact_match".
  virtual std::string rate_name() const = 0;
  /// K for a classifier of K classes (per-class Fréchet distances), 0 otherwise.
  virtual int64_t num_classes() const { return 0; }
  /// The images it reads: {C, H, W}.
  virtual std::vector<int64_t> image_shape() const = 0;
  /// Features of images x [N, C, H, W] in [-1, 1]: [N, F] float64 on the CPU.
  virtual torch::Tensor features(const torch::Tensor& x) const = 0;
  /// Whether each image shows the condition it was requested with: [N] bool on the CPU.
  /// `features` are features(x), for graders that decide from them.
  virtual torch::Tensor correct(const torch::Tensor& x, const torch::Tensor& features,
                                const Condition& cond) const = 0;
};
using GraderPtr = std::shared_ptr<const Grader>;

GraderPtr classifier_grader(ImageClassifier classifier);
GraderPtr reader_grader(CharReader reader);
/// A classifier file (save_classifier) or a text reader file (save_char_reader); InputError
/// naming the path for another file.
GraderPtr load_grader(const std::string& path);

}  // namespace ramflow
