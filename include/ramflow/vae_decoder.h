#pragma once
// The decoder `vae`: the decoder half of diffusers' AutoencoderKL (Kingma & Welling 2014; the
// Stable Diffusion VAE of Rombach et al. 2022, SD3's with 16 latent channels), with diffusers'
// parameter names ("decoder.up_blocks.0.resnets.1.conv2.weight", ...), read from a diffusers vae/
// folder. It turns the latents the MM-DiT samples into images:
//   x = clamp(D(z / scaling_factor + shift_factor), -1, 1)     z [B, C, h, w] -> x [B, 3, f h, f w]
// with f = 2^(number of blocks - 1) (8 for SD3), x in [-1, 1] as every ramflow image (image.h); the
// clamp is diffusers' postprocessing (x / 2 + 1/2 clamped to [0, 1]) in that range.
//   D: conv_in -> mid_block (ResNet, one-head self-attention over the h w positions, ResNet) ->
//      up_blocks (reversed block_out_channels; layers_per_block + 1 ResNets each, then nearest x2
//      upsampling and a 3x3 conv except in the last) -> GroupNorm -> SiLU -> conv_out
//   ResNet: y = shortcut(x) + conv2(SiLU(GN(conv1(SiLU(GN(x)))))), shortcut a 1x1 conv when the
//      channels change; every GroupNorm has eps 1e-6.
// Differentiable in z: DRaFT and the adjoint methods take the reward's gradient through it.
#include <string>
#include <vector>

#include <torch/nn/modules/conv.h>

#include "ramflow/decoder.h"
#include "ramflow/diffusers_files.h"

namespace ramflow {

/// The decoder's fields of diffusers' AutoencoderKL config.json.
struct VAEDecoderOptions {
  TORCH_ARG(int64_t, latent_channels) = 16;
  TORCH_ARG(int64_t, out_channels) = 3;
  TORCH_ARG(std::vector<int64_t>, block_out_channels) = std::vector<int64_t>{128, 256, 512, 512};
  TORCH_ARG(int64_t, layers_per_block) = 2;
  TORCH_ARG(int64_t, norm_num_groups) = 32;
  TORCH_ARG(double, scaling_factor) = 1.5305;
  TORCH_ARG(double, shift_factor) = 0.0609;
  TORCH_ARG(bool, use_post_quant_conv) = false;
  TORCH_ARG(bool, mid_block_add_attention) = true;

 public:
  /// The upsampling factor f.
  int64_t factor() const { return int64_t{1} << (block_out_channels().size() - 1); }
  nlohmann::json to_json() const;
  /// Reads an AutoencoderKL config.json object: the fields above; the encoder's fields are
  /// skipped; ConfigError naming `source` for anything this port does not compute (another block
  /// or activation type, latents_mean/std, groups that do not divide the channels).
  static VAEDecoderOptions from_json(const nlohmann::json& config,
                                     const std::string& source = "VAE config");
};

class VAEDecoderImpl : public DecoderImpl {
 public:
  /// Parameters in `dtype`, drawn by reset_parameters or read from `weights_dir` (a vae/ folder).
  VAEDecoderImpl(const VAEDecoderOptions& options, torch::Dtype dtype = torch::kFloat32,
                 std::string weights_dir = "");
  /// z [B, C, h, w] -> x [B, out_channels, f h, f w] in [-1, 1], float32.
  torch::Tensor forward(const torch::Tensor& z) override;
  std::vector<int64_t> decoded_shape(const std::vector<int64_t>& latent_shape) const override;
  /// {"type": "vae", "config": {...}, "dtype", ["weights": dir]}.
  nlohmann::json spec() const override;
  /// Reads the weights folder's decoder when there is one; else PyTorch's default initialisation
  /// (GroupNorm weights 1, biases 0).
  void reset_parameters(Rng& rng) override;
  const VAEDecoderOptions& options() const { return options_; }

 private:
  VAEDecoderOptions options_;
  torch::Dtype dtype_;
  ComponentWeights weights_;
  torch::nn::Conv2d post_quant_conv_{nullptr};
  std::shared_ptr<torch::nn::Module> decoder_;  // "decoder": conv_in, mid_block, up_blocks, ...
};
TORCH_MODULE(VAEDecoder);

/// The registry's factory: {"type": "vae", "config": {AutoencoderKL config.json fields} (read
/// from weights/config.json when absent), "dtype" (default float32), "weights": a diffusers vae/
/// folder (optional)}.
DecoderPtr make_vae_decoder(const nlohmann::json& spec);

}  // namespace ramflow
