#pragma once
// MLPVelocity: a multilayer perceptron velocity field with Fourier time features, for low-dimensional data.
//   input  = [x (D), sin(2^k pi t), cos(2^k pi t) for k = 0..F-1, class embedding (E, if conditional)]
//   hidden = depth x (Linear -> SiLU) of width H;  output = Linear(H -> D)
// The 2-D default (H = 128, depth 3, F = 8) has 35,714 parameters.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ramflow/velocity_field.h"

namespace ramflow {

struct MLPVelocityOptions {
  explicit MLPVelocityOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);               // D, the flattened data dimension
  TORCH_ARG(int64_t, hidden) = 128;      // H
  TORCH_ARG(int64_t, depth) = 3;         // hidden layers
  TORCH_ARG(int64_t, frequencies) = 8;   // F Fourier frequencies of t
  TORCH_ARG(int64_t, num_classes) = 0;   // 0: unconditional
  TORCH_ARG(int64_t, class_dim) = 16;    // E, class embedding width

 public:
  nlohmann::json to_json() const;
  /// Reads {"dim", "hidden", "depth", "frequencies", "num_classes", "class_dim"}; unknown fields throw.
  static MLPVelocityOptions from_json(const nlohmann::json& spec);
};

class MLPVelocityImpl : public VelocityFieldImpl {
 public:
  explicit MLPVelocityImpl(const MLPVelocityOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const torch::Tensor& cond = {}) override;
  nlohmann::json spec() const override;
  const MLPVelocityOptions& options() const { return options_; }

 private:
  MLPVelocityOptions options_;
  torch::Tensor freqs_;  // [F] = 2^k pi
  torch::nn::ModuleList layers_;
  torch::nn::Embedding class_embedding_{nullptr};
};
TORCH_MODULE(MLPVelocity);

}  // namespace ramflow
