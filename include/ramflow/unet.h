#pragma once
// UNet: a class-conditional U-Net velocity field for images x [B, C, H, W] (H and W divisible by
// 2^(levels - 1)), built from LibTorch's Conv2d, Linear, GroupNorm and Embedding modules so that
// LoRA adapters can attach to any Conv2d or Linear by name. Parameter names and layouts are
// PyTorch's
// (`down.0.conv1.weight` of shape [out, in, kh, kw]); python/ramflow_models.py defines the same
// network.
//
// With c_i = channels * mult[i] (levels i = 0 .. L-1) and E = 4 * channels:
//   emb   = time_mlp(sinusoid(1000 t)) + class_emb(label)        [B, E]
//           sinusoid: [sin(1000 t w_k), cos(1000 t w_k)], w_k = 10000^(-k / (c_0/2)), k < c_0/2;
//           time_mlp = Linear(c_0, E), SiLU, Linear(E, E); class_emb has num_classes + 1 rows, the
//           last for the null label kNullId (-1) of classifier-free guidance.
//   h     = conv_in(x)                                           [B, c_0, H, W]
//   down.i: h = block(h, emb) (-> c_i); keep h as skip_i; then, but for the last level, a stride-2
//           3x3 conv `down.i.resample` halves H and W
//   mid.0 (with self-attention at the lowest resolution when `attention`), mid.1: blocks at c_{L-1}
//   up.j (level i = L-1-j): h = block(concat(h, skip_i), emb) (-> c_i); then, but for level 0,
//           `up.j.resample`: nearest-neighbour x2, then a 3x3 conv c_i -> c_{i-1}
//   v     = conv_out(silu(norm_out(h)))                          [B, C, H, W]
// A block is the residual unit of DDPM:
//   a = conv1(silu(norm1(h))) + emb_proj(silu(emb))[:, :, None, None];  b = conv2(silu(norm2(a)))
//   out = skip(h) + b    (skip: 1x1 conv when the width changes, else the identity)
//   then, with attention: out = out + proj(softmax(q k^T / sqrt(d)) v) over the H*W positions,
//   heads of width d = 32, q, k, v = qkv(norm_attn(out)) per position (Linear layers on channels).
// Every GroupNorm has `groups` groups (default 8; each width must be a multiple), eps 1e-5.
// Initialisation (from an Rng, so a seed fixes the weights): Conv2d and Linear as PyTorch's
// defaults (weights and biases uniform in +-1/sqrt(fan_in)), GroupNorm weight 1 and bias 0, the
// class embedding N(0, 1); each block's conv2, the attention's proj and conv_out start at zero, so
// the network starts as v = 0 and every block as the identity.
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "ramflow/velocity_field.h"

namespace ramflow {

struct UNetOptions {
  TORCH_ARG(int64_t, in_channels) = 1;  // C
  TORCH_ARG(int64_t, image_size) = 28;  // H = W
  TORCH_ARG(int64_t, channels) = 16;    // c_0
  TORCH_ARG(std::vector<int64_t>, mult) = std::vector<int64_t>{1, 2,
                                                               4};  // c_i = channels * mult[i]
  TORCH_ARG(int64_t, num_classes) = 0;                              // 0: unconditional
  TORCH_ARG(bool, attention) = true;                                // self-attention in mid.0
  TORCH_ARG(int64_t, groups) = 8;                                   // GroupNorm groups

 public:
  nlohmann::json to_json() const;
  /// Reads {"in_channels", "image_size", "channels", "mult", "num_classes", "attention", "groups"};
  /// unknown fields and inconsistent sizes throw ConfigError.
  static UNetOptions from_json(const nlohmann::json& spec);
};

/// One residual block (with optional self-attention and an optional resampling conv), see above.
class UNetBlockImpl : public torch::nn::Module {
 public:
  /// resample: 0 none, -1 stride-2 conv (down, width out -> out), +1 nearest x2 + conv (up, out ->
  /// up_out).
  UNetBlockImpl(int64_t in, int64_t out, int64_t emb_dim, int64_t groups, bool attention,
                int resample, int64_t up_out);
  /// h [B, in, H, W], emb [B, E] -> the block's output [B, out, H, W] (before resampling).
  torch::Tensor block(const torch::Tensor& h, const torch::Tensor& emb);
  /// The resampling conv (the identity when there is none).
  torch::Tensor resample(const torch::Tensor& h);

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr}, norm_attn{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr}, resample_conv{nullptr};
  torch::nn::Linear emb_proj{nullptr}, qkv{nullptr}, proj{nullptr};

 private:
  int resample_mode_ = 0;
};
TORCH_MODULE(UNetBlock);

class UNetImpl : public VelocityFieldImpl {
 public:
  explicit UNetImpl(const UNetOptions& options);
  /// x [B, C, H, W], t [B], cond with labels [B] int64 (kNullId for none; ignored when
  /// unconditional).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  nlohmann::json spec() const override;
  void reset_parameters(Rng& rng) override;
  const UNetOptions& options() const { return options_; }

 private:
  UNetOptions options_;
  torch::Tensor freqs_;  // [c_0 / 2] buffer w_k
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::Sequential time_mlp{nullptr};
  torch::nn::Embedding class_emb{nullptr};
  torch::nn::ModuleList down{nullptr}, mid{nullptr}, up{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(UNet);

}  // namespace ramflow
