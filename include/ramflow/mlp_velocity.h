#pragma once
// MLPVelocity: a multilayer perceptron velocity field with Fourier time features, for
// low-dimensional data.
//   input  h_0 = [x (D), sin(2^k pi t), cos(2^k pi t) for k = 0..F-1, class embedding (E, if
//   conditional)] hidden z_l = h_l Wt_l + b_l,  h_{l+1} = silu(z_l)   for l = 0..depth-1, width H
//   output v   = h_depth Wt_depth + b_depth               (H -> D)
// Weights are stored transposed, Wt_l of shape [in, out] (parameters "layer<l>_weight_t" and
// "layer<l>_bias"), so every layer is a plain row-major matrix product. Initialisation is PyTorch's
// Linear default, Wt and b uniform in +-1/sqrt(in), and the class embedding N(0, 1), drawn from an
// Rng (seed 0 in the constructor; make_velocity_field's init_seed otherwise). The 2-D default (H =
// 128, depth 3, F = 8) has 35,714 parameters.
//
// Speed: on float32 CPU tensors the forward pass runs fused. Without autograd it is one pass
// through the dense kernels (no per-layer operators); with autograd the whole network is one
// autograd node with a hand-written backward (gradients for x, the class embedding, every Wt_l and
// b_l; not for t). Both share the input features, so the two give bit-identical velocities. Other
// devices and dtypes, a t that needs gradients, and models with set_fused(false) use ordinary
// LibTorch operators (the same function up to rounding). The fused backward is first-order only (no
// create_graph).
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include "ramflow/velocity_field.h"

namespace ramflow {

struct MLPVelocityOptions {
  explicit MLPVelocityOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);              // D, the flattened data dimension
  TORCH_ARG(int64_t, hidden) = 128;     // H
  TORCH_ARG(int64_t, depth) = 3;        // hidden layers
  TORCH_ARG(int64_t, frequencies) = 8;  // F Fourier frequencies of t
  TORCH_ARG(int64_t, num_classes) = 0;  // 0: unconditional
  TORCH_ARG(int64_t, class_dim) = 16;   // E, class embedding width

 public:
  nlohmann::json to_json() const;
  /// Reads {"dim", "hidden", "depth", "frequencies", "num_classes", "class_dim"}; unknown fields
  /// throw.
  static MLPVelocityOptions from_json(const nlohmann::json& spec);
};

class MLPVelocityImpl : public VelocityFieldImpl {
 public:
  explicit MLPVelocityImpl(const MLPVelocityOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  nlohmann::json spec() const override;
  void reset_parameters(Rng& rng) override;
  const MLPVelocityOptions& options() const { return options_; }
  /// Use the fused CPU kernels where they apply (default true).
  void set_fused(bool fused) { fused_ = fused; }
  bool fused() const { return fused_; }

 private:
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& t, const Condition& cond);

  MLPVelocityOptions options_;
  torch::Tensor freqs_;              // [F] = 2^k pi
  std::vector<torch::Tensor> wt_;    // Wt_l: [in_l, out_l]
  std::vector<torch::Tensor> bias_;  // b_l: [out_l]
  torch::nn::Embedding class_embedding_{nullptr};
  bool fused_ = true;
};
TORCH_MODULE(MLPVelocity);

}  // namespace ramflow
