#pragma once
// The toy learned decoder `mlp`: a latent z [B, d] to a decoded sample x [B, D] by a
// one-hidden-layer perceptron, x = W_2 tanh(W_1 z + b_1) + b_2 + A z (a smooth, nonlinear map with
// a linear skip A, so that distinct latents stay distinct). It is the latent-model stand-in for
// SD3's VAE decoder in tests and toy tasks: its weights are parameters (a checkpoint restores
// them), frozen in post-training.
#include <torch/nn/modules/linear.h>

#include "ramflow/decoder.h"

namespace ramflow {

struct MLPDecoderOptions {
  MLPDecoderOptions(int64_t latent_dim, int64_t dim) : latent_dim_(latent_dim), dim_(dim) {}
  TORCH_ARG(int64_t, latent_dim);  // d
  TORCH_ARG(int64_t, dim);         // D
  TORCH_ARG(int64_t, hidden) = 32;

 public:
  nlohmann::json to_json() const;
  /// Reads {"latent_dim", "dim", "hidden"}; unknown fields throw.
  static MLPDecoderOptions from_json(const nlohmann::json& spec);
};

class MLPDecoderImpl : public DecoderImpl {
 public:
  explicit MLPDecoderImpl(const MLPDecoderOptions& options);
  torch::Tensor forward(const torch::Tensor& z) override;
  std::vector<int64_t> decoded_shape(const std::vector<int64_t>& latent_shape) const override;
  nlohmann::json spec() const override { return options_.to_json(); }
  void reset_parameters(Rng& rng) override;

 private:
  MLPDecoderOptions options_;
  torch::nn::Linear in_{nullptr}, out_{nullptr}, skip_{nullptr};
};
TORCH_MODULE(MLPDecoder);

}  // namespace ramflow
