// AutoencoderKL's decoder (see include/ramflow/vae_decoder.h). Module names are diffusers'.
#include "ramflow/vae_decoder.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/attention.h"
#include "ramflow/config.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"
#include "ramflow/init.h"

namespace ramflow {
namespace {

namespace nn = torch::nn;
constexpr double kEps = 1e-6;  // every GroupNorm of the decoder

nn::Conv2d conv(int64_t in, int64_t out, int64_t k) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).padding(k / 2));
}

nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return nn::GroupNorm(nn::GroupNormOptions(groups, channels).eps(kEps));
}

/// ResnetBlock2D without a time embedding: shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))).
class ResnetImpl : public nn::Module {
 public:
  ResnetImpl(int64_t in, int64_t out, int64_t groups) {
    norm1 = register_module("norm1", group_norm(groups, in));
    conv1 = register_module("conv1", conv(in, out, 3));
    norm2 = register_module("norm2", group_norm(groups, out));
    conv2 = register_module("conv2", conv(out, out, 3));
    if (in != out) conv_shortcut = register_module("conv_shortcut", conv(in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = conv1(torch::silu(norm1(x)));  // [B, out, H, W]
    h = conv2(torch::silu(norm2(h)));
    return (conv_shortcut ? conv_shortcut(x) : x) + h;
  }

 private:
  nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(Resnet);

/// The mid-block's self-attention: one head of width C over the H W positions, a residual.
///   y = x + to_out(attention(to_q(n), to_k(n), to_v(n))),  n = GroupNorm(x) as [B, H W, C]
class MidAttentionImpl : public nn::Module {
 public:
  MidAttentionImpl(int64_t channels, int64_t groups) {
    group_norm_ = register_module("group_norm", group_norm(groups, channels));
    to_q = register_module("to_q", nn::Linear(channels, channels));
    to_k = register_module("to_k", nn::Linear(channels, channels));
    to_v = register_module("to_v", nn::Linear(channels, channels));
    to_out = register_module("to_out", nn::ModuleList(nn::Linear(channels, channels)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const auto n = group_norm_(x).flatten(2).transpose(1, 2);  // [B, H W, C]
    // One head: [B, 1, H W, C].
    auto y = attention(to_q(n).unsqueeze(1), to_k(n).unsqueeze(1), to_v(n).unsqueeze(1));
    y = to_out[0]->as<nn::Linear>()->forward(y.squeeze(1));  // [B, H W, C]
    return x + y.transpose(1, 2).reshape({B, C, H, W});
  }

 private:
  nn::GroupNorm group_norm_{nullptr};
  nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  nn::ModuleList to_out;
};
TORCH_MODULE(MidAttention);

/// Nearest x2 upsampling, then a 3x3 conv ("upsamplers.0.conv").
class UpsampleImpl : public nn::Module {
 public:
  explicit UpsampleImpl(int64_t channels) {
    conv_ = register_module("conv", conv(channels, channels, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return conv_(torch::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)}));  // [B, C, 2H, 2W]
  }

 private:
  nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample);

/// Runs the modules of a list in order (each a Resnet, MidAttention or Upsample).
torch::Tensor run_all(nn::ModuleList& list, torch::Tensor x) {
  for (auto& m : *list) {
    if (auto* r = m->as<ResnetImpl>())
      x = r->forward(x);
    else if (auto* a = m->as<MidAttentionImpl>())
      x = a->forward(x);
    else
      x = m->as<UpsampleImpl>()->forward(x);
  }
  return x;
}

/// diffusers' Decoder: conv_in, mid_block, up_blocks, conv_norm_out, conv_out.
class DecoderStackImpl : public nn::Module {
 public:
  explicit DecoderStackImpl(const VAEDecoderOptions& o) {
    const auto& ch = o.block_out_channels();
    const int64_t G = o.norm_num_groups(), top = ch.back();
    conv_in = register_module("conv_in", conv(o.latent_channels(), top, 3));
    auto mid = register_module("mid_block", std::make_shared<nn::Module>());
    mid_resnets =
        mid->register_module("resnets", nn::ModuleList(Resnet(top, top, G), Resnet(top, top, G)));
    if (o.mid_block_add_attention())
      mid_attention = mid->register_module("attentions", nn::ModuleList(MidAttention(top, G)));
    // Up blocks run from the widest channels (reversed block_out_channels) to the narrowest.
    auto ups = register_module("up_blocks", nn::ModuleList());
    int64_t in = top;
    for (size_t i = 0; i < ch.size(); ++i) {
      const int64_t out = ch[ch.size() - 1 - i];
      auto block = std::make_shared<nn::Module>();
      nn::ModuleList resnets, upsamplers;
      for (int64_t j = 0; j <= o.layers_per_block(); ++j)
        resnets->push_back(Resnet(j == 0 ? in : out, out, G));
      block->register_module("resnets", resnets);
      if (i + 1 < ch.size()) {
        upsamplers->push_back(Upsample(out));
        block->register_module("upsamplers", upsamplers);
      }
      ups->push_back(block);
      up_blocks.push_back({resnets, upsamplers});
      in = out;
    }
    conv_norm_out = register_module("conv_norm_out", group_norm(G, ch.front()));
    conv_out = register_module("conv_out", conv(ch.front(), o.out_channels(), 3));
  }
  torch::Tensor forward(const torch::Tensor& z) {
    auto h = conv_in(z);  // [B, C_top, h, w]
    // mid_block: resnets.0, attentions.0, resnets.1
    h = mid_resnets[0]->as<ResnetImpl>()->forward(h);
    if (mid_attention) h = mid_attention[0]->as<MidAttentionImpl>()->forward(h);
    h = mid_resnets[1]->as<ResnetImpl>()->forward(h);
    for (auto& [resnets, upsamplers] : up_blocks) {
      h = run_all(resnets, h);
      if (!upsamplers->is_empty()) h = run_all(upsamplers, h);  // [B, C, 2H, 2W]
    }
    return conv_out(torch::silu(conv_norm_out(h)));  // [B, out_channels, f h, f w]
  }

 private:
  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  nn::ModuleList mid_resnets{nullptr}, mid_attention{nullptr};
  std::vector<std::pair<nn::ModuleList, nn::ModuleList>> up_blocks;
  nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(DecoderStack);

}  // namespace

VAEDecoderImpl::VAEDecoderImpl(const VAEDecoderOptions& options, torch::Dtype dtype,
                               std::string weights_dir)
    : options_(options),
      dtype_(dtype),
      // The folder's encoder is not ported: its tensors are left in the file.
      weights_(std::move(weights_dir), {"encoder.", "quant_conv."}) {
  if (options_.use_post_quant_conv())
    post_quant_conv_ = register_module(
        "post_quant_conv", conv(options_.latent_channels(), options_.latent_channels(), 1));
  decoder_ = register_module("decoder", DecoderStack(options_).ptr());
  to(dtype_);
  Rng rng(0);
  reset_parameters(rng);
}

void VAEDecoderImpl::reset_parameters(Rng& rng) {
  if (!weights_.empty()) {
    weights_.load(*this);
    return;
  }
  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* l = m->as<nn::LinearImpl>()) init_layer_uniform(l->weight, l->bias, rng);
    if (auto* c = m->as<nn::Conv2dImpl>()) init_layer_uniform(c->weight, c->bias, rng);
    if (auto* g = m->as<nn::GroupNormImpl>()) {
      g->weight.fill_(1.0);
      g->bias.zero_();
    }
  }
}

torch::Tensor VAEDecoderImpl::forward(const torch::Tensor& z) {
  TORCH_CHECK(z.dim() == 4 && z.size(1) == options_.latent_channels(),
              "VAE decoder: z must be [B, ", options_.latent_channels(), ", h, w], got ",
              z.sizes());
  // Undo the latent normalisation the transformer was trained in: z / scaling + shift.
  auto h = (z.to(torch::kFloat32) / options_.scaling_factor() + options_.shift_factor()).to(dtype_);
  if (post_quant_conv_) h = post_quant_conv_(h);
  auto x = decoder_->as<DecoderStackImpl>()->forward(h);  // [B, 3, f h, f w]
  return x.to(torch::kFloat32).clamp(-1.0, 1.0);
}

std::vector<int64_t> VAEDecoderImpl::decoded_shape(const std::vector<int64_t>& latent) const {
  if (latent.size() != 3 || latent[0] != options_.latent_channels())
    throw ConfigError("decoder 'vae': latents must be [" +
                      std::to_string(options_.latent_channels()) + ", h, w] per sample");
  const int64_t f = options_.factor();
  return {options_.out_channels(), f * latent[1], f * latent[2]};
}

nlohmann::json VAEDecoderImpl::spec() const {
  nlohmann::json s = {
      {"type", "vae"}, {"config", options_.to_json()}, {"dtype", dtype_name(dtype_)}};
  if (!weights_.empty()) s["weights"] = weights_.dir();
  return s;
}

DecoderPtr make_vae_decoder(const nlohmann::json& spec) {
  SpecReader r(spec, "decoder 'vae'");
  const ComponentSpec c = read_component_spec(r, "AutoencoderKL");
  r.finish();
  return VAEDecoder(VAEDecoderOptions::from_json(c.config, c.source), c.dtype, c.weights).ptr();
}

}  // namespace ramflow
