#pragma once
// Image classifiers: the learned judge of the `classifier` reward, and the evaluation classifier
// whose accuracy and feature space grade post-trained images (a reward model grading its own exam
// would hide reward hacking, so the two differ in architecture and seed). Images x [B, C, H, W] in
// [-1, 1].
//   "cnn"    (the reward's judge)   conv3x3 C->16, ReLU; conv3x3 16->32, BatchNorm, ReLU; maxpool
//   2;
//            conv3x3 32->64, BatchNorm, ReLU; maxpool 2; conv3x3 64->64, BatchNorm, ReLU;
//            flatten; fc1 -> 128, ReLU (the features); dropout 0.3 (training only); fc2 -> K
//   "resnet" (the evaluator)        conv5x5 C->32, GroupNorm(8), SiLU; avgpool 2; a residual block
//   of two
//            conv3x3 32->32 with GroupNorm and SiLU; conv3x3 stride 2 32->64, GroupNorm, SiLU; a
//            residual block at 64; global average pool; fc1 64 -> 128, SiLU (the features); fc2 ->
//            K
// Both are LibTorch modules with PyTorch's parameter names ("conv1.weight", "fc2.bias", ...). A
// classifier file is safetensors: the parameters and buffers under their names, and metadata
// "ramflow":
// {"format": 1, "classifier": spec, ...training facts (test accuracy, epochs, seed)}.
#include <functional>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json.hpp>

#include "ramflow/rng.h"
#include "ramflow/task.h"

namespace ramflow {

struct ClassifierOptions {
  TORCH_ARG(std::string, arch) = "cnn";  // "cnn" or "resnet"
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;  // H = W, divisible by 4
  TORCH_ARG(int64_t, num_classes) = 10;

 public:
  nlohmann::json to_json() const;
  static ClassifierOptions from_json(const nlohmann::json& spec);
};

class ImageClassifierImpl : public torch::nn::Module {
 public:
  explicit ImageClassifierImpl(const ClassifierOptions& options);
  /// Logits: x [B, C, H, W] -> [B, K].
  torch::Tensor forward(const torch::Tensor& x);
  /// The penultimate activations (fc1's output after its nonlinearity): x -> [B, 128]. The Fréchet
  /// distance of image evaluation is measured in this space.
  torch::Tensor features(const torch::Tensor& x);
  /// Logits from features(x) in eval mode (no dropout): forward(x) == logits(features(x)) when not
  /// training, so graders that need both pass through the network once.
  torch::Tensor logits(const torch::Tensor& features) { return fc2(features); }
  /// Draws every parameter from `rng` (PyTorch's default initialisation, from a seeded stream).
  void reset_parameters(Rng& rng);
  const ClassifierOptions& options() const { return options_; }
  static constexpr int64_t kFeatures = 128;

 private:
  ClassifierOptions options_;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, conv4{nullptr}, conv5{nullptr},
      conv6{nullptr};
  torch::nn::BatchNorm2d bn2{nullptr}, bn3{nullptr}, bn4{nullptr};
  torch::nn::GroupNorm gn1{nullptr}, gn2{nullptr}, gn3{nullptr}, gn4{nullptr}, gn5{nullptr},
      gn6{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ImageClassifier);

struct ClassifierTrainOptions {
  TORCH_ARG(int64_t, epochs) = 5;
  TORCH_ARG(int64_t, batch) = 128;
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(uint64_t, seed) = 0;
};

struct ClassifierEpoch {
  int64_t epoch = 0;    // 1-based
  int64_t batches = 0;  // batches done in this epoch so far
  int64_t total_batches = 0;
  double loss = 0;                      // mean training cross-entropy of the epoch so far
  double test_accuracy = std::nan("");  // after the epoch (NaN while it runs)
  double seconds = 0;
};

/// Trains a classifier on (x [N, C, H, W] in [-1, 1], labels [N]) with Adam and cross-entropy, each
/// epoch a fresh permutation; after each epoch measures the accuracy on (test_x, test_labels).
/// `on_progress` is called after every batch and after each epoch's test. Returns the final test
/// accuracy.
double train_classifier(ImageClassifierImpl& model, const torch::Tensor& x,
                        const torch::Tensor& labels, const torch::Tensor& test_x,
                        const torch::Tensor& test_labels, const ClassifierTrainOptions& options,
                        const std::function<void(const ClassifierEpoch&)>& on_progress = {});

/// The fraction of images classified as their label (eval mode, batches of 1000, no grad).
double classifier_accuracy(ImageClassifierImpl& model, const torch::Tensor& x,
                           const torch::Tensor& labels);

/// Saves a classifier file (see above), atomically; `meta` fields are added to its metadata.
void save_classifier(const std::string& path, const ImageClassifierImpl& model,
                     const nlohmann::json& meta = nlohmann::json::object());
/// Loads a classifier file, in eval mode; InputError naming the file if it is not one. `meta`
/// (optional) receives its metadata.
ImageClassifier load_classifier(const std::string& path, nlohmann::json* meta = nullptr);

}  // namespace ramflow
