#pragma once
// A small text recogniser for images of one line of capitals (the words task): the second judge of
// that task, trained here, which the training reward (Tesseract) never sees, so that a policy
// exploiting Tesseract's quirks shows as a gap between the two.
//
// CRNN-style (Shi et al. 2016, without the recurrence): convolutions (each followed by GroupNorm
// and ReLU) take an image [1, H, W] to T = W / 2 columns of features, a 1-D convolution over the
// columns mixes neighbours, and each column scores the blank (0) and the letters (1..26,
// char_encoder.h's token ids):
//   x [B, 1, H, W] --conv 3x3 (stride 2 in height and width, then in height only)--> [B, C, H/8,
//   W/2]
//   --rows stacked, linear, ReLU--> columns [B, T, F] --conv1d (5 wide), ReLU--> f [B, T, F]
//   logits = f W_out + b  [B, T, 27]
// Trained with CTC (Graves et al. 2006): -log sum over alignments of the word's letters with
// blanks; read greedily (best path: the most likely symbol per column, repeats merged, blanks
// dropped). features() = the mean of f over the columns [B, F]: the feature space of the task's
// Fréchet distance and diversity.
#include <functional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json.hpp>

#include "ramflow/rng.h"
#include "ramflow/task.h"

namespace ramflow {

struct CharReaderOptions {
  TORCH_ARG(int64_t, height) = 16;     // H, a multiple of 8
  TORCH_ARG(int64_t, width) = 64;      // W, even
  TORCH_ARG(int64_t, alphabet) = 26;   // letters A..
  TORCH_ARG(int64_t, channels) = 64;   // C of the last convolutions
  TORCH_ARG(int64_t, features) = 128;  // F

 public:
  /// {"type": "char_reader", "height", "width", "alphabet", "channels", "features"}.
  nlohmann::json to_json() const;
  /// ConfigError naming the field for a bad value or an unknown field.
  static CharReaderOptions from_json(const nlohmann::json& spec);
};

class CharReaderImpl : public torch::nn::Module {
 public:
  explicit CharReaderImpl(const CharReaderOptions& options);
  /// x [B, 1, H, W] in [-1, 1] -> log-probabilities [B, T, alphabet + 1] (T = W / 2).
  torch::Tensor forward(const torch::Tensor& x);
  /// x -> the mean column feature [B, F].
  torch::Tensor features(const torch::Tensor& x);
  /// The CTC loss of images x against their words' tokens [B, L] (char_tokens: letters 1..26, 0
  /// after the word), the mean over the batch of the loss per letter.
  torch::Tensor loss(const torch::Tensor& x, const torch::Tensor& tokens);
  /// The words read in x (best path), in capitals.
  std::vector<std::string> read(const torch::Tensor& x);
  /// PyTorch's default initialisation from `rng`.
  void reset_parameters(Rng& rng);
  const CharReaderOptions& options() const { return options_; }

 private:
  /// x -> f [B, T, F].
  torch::Tensor columns(const torch::Tensor& x);
  CharReaderOptions options_;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::GroupNorm> norms_;
  torch::nn::Linear rows_{nullptr};
  torch::nn::Conv1d mix_{nullptr};
  torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(CharReader);

struct CharReaderTrainOptions {
  TORCH_ARG(int64_t, steps) = 2000;
  TORCH_ARG(int64_t, batch) = 64;
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Writes the reader as safetensors (its parameters under their module paths: "conv0.weight", ...)
/// with ramflow metadata {"char_reader": options, "format": 1, ...meta}, atomically.
void save_char_reader(const std::string& path, const CharReaderImpl& reader,
                      const nlohmann::json& meta = nlohmann::json::object());
/// Reads a file save_char_reader wrote (eval mode); InputError naming the path for another file.
/// `meta`, if given, receives the metadata.
CharReader load_char_reader(const std::string& path, nlohmann::json* meta = nullptr);

/// Whether the reading of each image x [N, 1, H, W] is exactly `words[i]` (case-insensitive; an
/// empty word is never matched): [N] bool, CPU.
torch::Tensor exact_matches(CharReaderImpl& reader, const torch::Tensor& x,
                            const std::vector<std::string>& words);
/// The fraction of images x [N, 1, H, W] whose reading is exactly `words[i]` (case-insensitive).
double exact_match_rate(CharReaderImpl& reader, const torch::Tensor& x,
                        const std::vector<std::string>& words);

/// Trains `reader` with Adam on fresh images of the task's training words each step (its
/// sample_data with "tokens" conditions: the words task) and returns its exact-match rate on the
/// task's test split (held-out words). `on_step(step, loss)` is called after every step.
double train_char_reader(CharReaderImpl& reader, const Task& task,
                         const CharReaderTrainOptions& options,
                         const std::function<void(int64_t step, double loss)>& on_step = {});

}  // namespace ramflow
