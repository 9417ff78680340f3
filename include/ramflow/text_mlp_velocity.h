#pragma once
// TextMLPVelocity: a small text-conditioned velocity field for low-dimensional data, the toy
// stand-in for a text-to-image model: it reads a prompt's token embeddings `context` [B, L, C] and
// its pooled vector `pooled` [B, P] from the condition (condition.h), as SD3's MM-DiT reads T5/CLIP
// embeddings.
//   c   = W_c mean_l context[:, l, :] + W_p pooled                      (-> E, the text feature)
//   h_0 = [x (D), sin(2^k pi t), cos(2^k pi t) for k = 0..F-1, c (E)]
//   h_{l+1} = silu(h_l W_l + b_l) for l = 0..depth-1 (width H),  v = h_depth W_out + b_out  (-> D)
// The null condition of guidance is the task's encoded empty prompt: just another context and
// pooled vector. Linear layers are PyTorch's default initialisation, drawn from an Rng
// (reset_parameters).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ramflow/velocity_field.h"

namespace ramflow {

struct TextMLPVelocityOptions {
  TextMLPVelocityOptions(int64_t dim, int64_t context_dim, int64_t pooled_dim)
      : dim_(dim), context_dim_(context_dim), pooled_dim_(pooled_dim) {}
  TORCH_ARG(int64_t, dim);              // D, the flattened data dimension
  TORCH_ARG(int64_t, context_dim);      // C, the width of a context token
  TORCH_ARG(int64_t, pooled_dim);       // P, the width of the pooled vector
  TORCH_ARG(int64_t, text_dim) = 16;    // E, the text feature's width
  TORCH_ARG(int64_t, hidden) = 128;     // H
  TORCH_ARG(int64_t, depth) = 3;        // hidden layers
  TORCH_ARG(int64_t, frequencies) = 8;  // F Fourier frequencies of t

 public:
  nlohmann::json to_json() const;
  /// Reads {"dim", "context_dim", "pooled_dim", "text_dim", "hidden", "depth", "frequencies"};
  /// unknown fields throw.
  static TextMLPVelocityOptions from_json(const nlohmann::json& spec);
};

class TextMLPVelocityImpl : public VelocityFieldImpl {
 public:
  explicit TextMLPVelocityImpl(const TextMLPVelocityOptions& options);
  /// x [B, ...D], t [B], cond with "context" [B, L, C] and "pooled" [B, P] -> v [B, ...D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  nlohmann::json spec() const override { return options_.to_json(); }
  void reset_parameters(Rng& rng) override;

 private:
  TextMLPVelocityOptions options_;
  torch::Tensor freqs_;  // [F] = 2^k pi (a buffer)
  torch::nn::Linear context_proj_{nullptr}, pooled_proj_{nullptr};
  torch::nn::ModuleList layers_;
};
TORCH_MODULE(TextMLPVelocity);

}  // namespace ramflow
