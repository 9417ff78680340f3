#pragma once
// The parts of SD3's MM-DiT (include/ramflow/sd3_transformer.h), named as diffusers names them
// (attention_processor.py's Attention with JointAttnProcessor2_0, attention.py's
// JointTransformerBlock and FeedForward, normalization.py's RMSNorm). Internal to the library.
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace ramflow::sd3 {

/// RMSNorm over the last dimension, eps 1e-6, with a weight [n] (diffusers' RMSNorm):
///   y = (x / sqrt(mean(x^2) + eps)) * w,  the mean in float32, the product in w's dtype.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t n);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
};
TORCH_MODULE(RMSNorm);

/// adaLN: LayerNorm over the last dimension without affine parameters (eps 1e-6), then the
/// modulation LN(x) (1 + scale) + shift with scale and shift [B, D] broadcast over the tokens of x
/// [B, n, D]. Without gradients, float32 on the CPU, one pass of ramflow's kernel; otherwise
/// LibTorch's layer_norm and one addcmul.
torch::Tensor norm_modulate(const torch::Tensor& x, const torch::Tensor& shift,
                            const torch::Tensor& scale);

/// Multi-head attention with SD3's projections. With `joint`, the text tokens enter through their
/// own projections (add_q_proj, add_k_proj, add_v_proj; norm_added_q/k) and attend jointly with the
/// image tokens; their output goes through to_add_out unless `context_pre_only` (the last block,
/// which discards it). Without `joint` (attn2 of SD3.5's dual blocks), image tokens only.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads, bool joint, bool context_pre_only, bool qk_norm);
  /// z [B, N, D] (and e [B, L, D] when joint) -> (image output [B, N, D], text output [B, L, D] or
  /// undefined).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& z,
                                                  const torch::Tensor& e = {});

 private:
  /// [B, n, D] -> [B, heads, n, d], RMS-normalised per head when `norm` is not null.
  torch::Tensor heads(torch::nn::LinearImpl& proj, const torch::Tensor& x, RMSNormImpl* norm);
  /// The same written into out [B, heads, T, d] from token `at` on (no gradient; float32 on the
  /// CPU).
  void write_heads(torch::nn::LinearImpl& proj, const torch::Tensor& x, RMSNormImpl* norm,
                   torch::Tensor& out, int64_t at);
  /// Whether forward can take write_heads: no gradient recorded, float32 CPU weights and input.
  bool fusable(const torch::Tensor& z) const;
  int64_t heads_;
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out;  // to_out.0 (diffusers' to_out.1 is a dropout, not a module here)
  torch::nn::Linear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr},
      to_add_out{nullptr};
  RMSNorm norm_q{nullptr}, norm_k{nullptr}, norm_added_q{nullptr}, norm_added_k{nullptr};
};
TORCH_MODULE(Attention);

/// diffusers' FeedForward with GELU (tanh approximation): net.0.proj [4D, D], net.2 [D, 4D].
class FeedForwardImpl : public torch::nn::Module {
 public:
  explicit FeedForwardImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear proj_in{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(FeedForward);

/// An adaptive norm's modulation: linear(SiLU(c)) [B, k D], registered as "<name>.linear".
class ModulationImpl : public torch::nn::Module {
 public:
  ModulationImpl(int64_t dim, int64_t chunks);
  torch::Tensor forward(const torch::Tensor& c);

 private:
  torch::nn::Linear linear{nullptr};
};
TORCH_MODULE(Modulation);

/// One JointTransformerBlock: image tokens z and text tokens e, modulated by c.
///   norm1 (AdaLayerNormZero, 6 D; SD35AdaLayerNormZeroX in a dual block, 9 D): from SiLU(c),
///     shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp (+ shift_msa2, scale_msa2,
///     gate_msa2) in that order
///   norm1_context: the same six for e, or (last block, AdaLayerNormContinuous, 2 D) scale, shift
///   z += gate_msa attn_z;  (dual) z += gate_msa2 attn2(LN(z) (1 + scale_msa2) + shift_msa2)
///   z += gate_mlp FF(LN(z) (1 + scale_mlp) + shift_mlp);  e likewise unless the last block
class JointBlockImpl : public torch::nn::Module {
 public:
  JointBlockImpl(int64_t dim, int64_t heads, bool last, bool dual, bool qk_norm);
  /// z [B, N, D], e [B, L, D], c [B, D] -> (z, e) (e undefined after the last block).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& z, const torch::Tensor& e,
                                                  const torch::Tensor& c);

 private:
  bool last_, dual_;
  Modulation norm1{nullptr}, norm1_context{nullptr};
  Attention attn{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr}, ff_context{nullptr};
};
TORCH_MODULE(JointBlock);

/// block(z, e, c) without keeping its activations for the backward pass: they are recomputed there
/// (gradient checkpointing: the memory of one block's activations at a time, for a second forward
/// pass). The gradients reach z, e, c, the block's trainable parameters and the LoRA adapters in
/// force on its layers, through autograd alone (no side effect on .grad: torch::autograd::grad
/// through it works as through the plain block). With autograd off, the plain forward.
std::pair<torch::Tensor, torch::Tensor> checkpointed(JointBlockImpl& block, const torch::Tensor& z,
                                                     const torch::Tensor& e,
                                                     const torch::Tensor& c);

}  // namespace ramflow::sd3
