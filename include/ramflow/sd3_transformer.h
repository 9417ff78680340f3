#pragma once
// Stable Diffusion 3 / 3.5's MM-DiT (diffusers' SD3Transformer2DModel; Esser et al. 2024, "Scaling
// Rectified Flow Transformers for High-Resolution Image Synthesis"), with diffusers' parameter
// names and layouts, so that a diffusers transformer/ folder loads unchanged.
//
// Convention: x_t = (1 - t) x_0 + t eps and the network predicts v = eps - x_0 = d x_t / d t,
// ramflow's own (conventions.h) with t = sigma; the network's time input is 1000 t.
//
//   x [B, C, H, W] --patchify (conv P x P, stride P)--> z [B, N = (H/P)(W/P), D] + pos (centre crop
//   of an M x M sin-cos table, a frozen buffer)
//   c = MLP(sinusoid_256(1000 t)) + MLP(pooled) [B, D]            (time and pooled text)
//   e = context_embedder(context) [B, L, D]                        (prompt tokens)
//   per block: adaLN-Zero modulations from SiLU(c); joint attention over [z, e] tokens (RMS qk-norm
//   in SD3.5), a second image-only attention in SD3.5's dual blocks, gated MLPs; the last block
//   updates z only
//   v = unpatchify(proj_out(LN(z) (1 + scale) + shift))  [B, C, H, W]
//
// The condition carries "context" [B, L, joint_attention_dim] and "pooled" [B,
// pooled_projection_dim] (condition.h): the prompt embeddings of SD3's three text encoders. The
// attention projections are called through layer_forward (LoRA's branch, lora_branch.h). Weights
// are held in the spec's dtype; x and t may be float32, and v is returned in x's dtype.
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ramflow/diffusers_files.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

/// The fields of diffusers' SD3Transformer2DModel config.json, under their names there.
struct SD3TransformerOptions {
  TORCH_ARG(int64_t, sample_size) = 128;
  TORCH_ARG(int64_t, patch_size) = 2;  // P
  TORCH_ARG(int64_t, in_channels) = 16;
  TORCH_ARG(int64_t, num_layers) = 18;
  TORCH_ARG(int64_t, attention_head_dim) = 64;
  TORCH_ARG(int64_t, num_attention_heads) = 18;
  TORCH_ARG(int64_t, joint_attention_dim) = 4096;
  TORCH_ARG(int64_t, caption_projection_dim) = 1152;  // must be D = heads x head_dim
  TORCH_ARG(int64_t, pooled_projection_dim) = 2048;
  TORCH_ARG(int64_t, out_channels) = 16;
  TORCH_ARG(int64_t, pos_embed_max_size) = 96;  // M
  TORCH_ARG(std::vector<int64_t>, dual_attention_layers) = {};
  TORCH_ARG(std::string, qk_norm) = "";  // "" or "rms_norm"

 public:
  int64_t dim() const { return num_attention_heads() * attention_head_dim(); }  // D
  /// The config.json fields (with "_class_name").
  nlohmann::json to_json() const;
  /// Reads a config.json object: the fields above; diffusers' bookkeeping fields ("_class_name",
  /// "_diffusers_version", "_name_or_path") are skipped; any other field is a ConfigError naming
  /// `source`, as is an inconsistent config (caption_projection_dim != D, a dual layer out of
  /// range, an unknown qk_norm).
  static SD3TransformerOptions from_json(const nlohmann::json& config,
                                         const std::string& source = "SD3 transformer config");
};

/// SD3.5-Medium's config (research notes, sd3-port.md section 1): for the full-size memory bench.
SD3TransformerOptions sd35_medium_options();

class SD3TransformerImpl : public VelocityFieldImpl {
 public:
  /// A transformer of the given shape, its parameters in `dtype` (drawn by reset_parameters, or
  /// read from `weights_dir` when set: diffusers' transformer/ folder).
  SD3TransformerImpl(const SD3TransformerOptions& options, torch::Dtype dtype = torch::kFloat32,
                     std::string weights_dir = "");

  /// x [B, C, H, W] (H, W multiples of P, at most M P), t [B] in [0, 1], cond with "context" and
  /// "pooled" -> v [B, C, H, W] in x's dtype.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  /// {"type": "sd3", "config": {...config.json}, "dtype", ["weights": dir],
  /// ["gradient_checkpointing": true]}.
  nlohmann::json spec() const override;
  /// Reads the weights from the weights folder when the model has one (the constructor already
  /// did: nothing to do while no tensor was written since); else draws them as PyTorch initialises
  /// Linear and Conv2d layers (RMS norm weights 1, the sin-cos position table).
  void reset_parameters(Rng& rng) override;

  /// {""} while the weights are those of the weights folder, unchanged; else none.
  std::vector<std::string> tensors_from_files() const override;
  const SD3TransformerOptions& options() const { return options_; }
  torch::Dtype dtype() const { return dtype_; }
  const std::string& weights_dir() const { return weights_.dir(); }
  /// Recompute each block's activations in the backward pass instead of keeping them (memory ~ one
  /// block's activations instead of all of them, at the price of a second forward pass).
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  bool gradient_checkpointing() const { return checkpointing_; }

 private:
  /// The time and pooled-text embedding c [B, D].
  torch::Tensor conditioning(const torch::Tensor& t, const torch::Tensor& pooled);
  /// The patch tokens with their positions: x [B, C, H, W] -> [B, (H/P)(W/P), D].
  torch::Tensor patchify(const torch::Tensor& x);

  SD3TransformerOptions options_;
  torch::Dtype dtype_;
  ComponentWeights weights_;
  bool checkpointing_ = false;
  torch::nn::Conv2d patch_proj_{nullptr};  // pos_embed.proj
  torch::Tensor pos_table_;                // pos_embed.pos_embed [1, M M, D] (a buffer)
  torch::nn::Linear time_1_{nullptr}, time_2_{nullptr}, text_1_{nullptr}, text_2_{nullptr};
  torch::nn::Linear context_embedder_{nullptr};
  torch::nn::ModuleList blocks_;
  torch::nn::Linear norm_out_{nullptr}, proj_out_{nullptr};
};
TORCH_MODULE(SD3Transformer);

/// The layers LoRA adapts in SD3 by default, the attention projections that Flow-GRPO and
/// diffusers' SD3 training scripts target: attn.to_q, attn.to_k, attn.to_v, attn.to_out.0,
/// attn.add_q_proj, attn.add_k_proj, attn.add_v_proj, attn.to_add_out.
std::vector<std::string> sd3_lora_targets();

/// The registry's factory: {"type": "sd3", "config": {config.json fields} (read from
/// weights/config.json when absent), "dtype": "float32" | "float16" | "bfloat16" (default float32),
/// "weights": a diffusers transformer/ folder (optional; else random weights),
/// "gradient_checkpointing": true | false (default false)}.
VelocityFieldPtr make_sd3_transformer(const nlohmann::json& spec);

/// The sin-cos position table of SD3's PatchEmbed, [1, M M, D]: row-major grid positions (i, j) of
/// an M x M grid scaled by base_size / M with base_size = sample_size / P (diffusers'
/// get_2d_sincos_pos_embed with pos_embed_max_size), each embedded as [sincos_{D/2}(j) |
/// sincos_{D/2}(i)], sincos_n(p) = [sin(p w_k) | cos(p w_k)], w_k = 10000^(-k / (n/2)).
torch::Tensor sd3_position_table(const SD3TransformerOptions& options);

}  // namespace ramflow
