// SD3 / SD3.5's MM-DiT (see include/ramflow/sd3_transformer.h).
#include "ramflow/sd3_transformer.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/diffusers_files.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"
#include "ramflow/init.h"
#include "ramflow/lora_branch.h"
#include "sd3_blocks.h"

namespace ramflow {
namespace {

constexpr int64_t kTimeChannels = 256;  // the sinusoidal time embedding's width

/// The sinusoidal embedding of the time input s = 1000 t (diffusers' Timesteps(256,
/// flip_sin_to_cos=True, downscale_freq_shift=0)): [cos(s f_k) | sin(s f_k)], f_k = exp(-ln(10000)
/// k / 128), k = 0..127, in float32. s [B] -> [B, 256].
torch::Tensor time_embedding(const torch::Tensor& s) {
  const int64_t half = kTimeChannels / 2;
  const auto k =
      torch::arange(half, torch::TensorOptions().dtype(torch::kFloat32).device(s.device()));
  const auto f = torch::exp(-std::log(10000.0) * k / static_cast<double>(half));  // [128]
  const auto arg = s.to(torch::kFloat32).unsqueeze(1) * f.unsqueeze(0);           // [B, 128]
  return torch::cat({torch::cos(arg), torch::sin(arg)}, 1);                       // [B, 256]
}

/// [sin(p w_k) | cos(p w_k)] of positions p [n] (float64), w_k = 10000^(-k / (width/2)): [n,
/// width].
torch::Tensor sincos_1d(int64_t width, const torch::Tensor& p) {
  const auto k = torch::arange(width / 2, torch::kFloat64) / static_cast<double>(width / 2);
  const auto w = torch::pow(10000.0, -k);                    // [width/2]
  const auto arg = p.unsqueeze(1) * w.unsqueeze(0);          // [n, width/2]
  return torch::cat({torch::sin(arg), torch::cos(arg)}, 1);  // [n, width]
}

}  // namespace

VelocityFieldPtr make_sd3_transformer(const nlohmann::json& spec) {
  SpecReader r(spec, "model 'sd3'");
  const ComponentSpec c = read_component_spec(r, "SD3Transformer2DModel");
  const bool checkpointing = r.flag("gradient_checkpointing", false);
  r.finish();
  auto model =
      SD3Transformer(SD3TransformerOptions::from_json(c.config, c.source), c.dtype, c.weights);
  model->set_gradient_checkpointing(checkpointing);
  return model.ptr();
}

torch::Tensor sd3_position_table(const SD3TransformerOptions& o) {
  const int64_t M = o.pos_embed_max_size(), D = o.dim();
  const double base_size = static_cast<double>(o.sample_size() / o.patch_size());
  const auto p = torch::arange(M, torch::kFloat64) * (base_size / static_cast<double>(M));  // [M]
  const auto col = sincos_1d(D / 2, p).unsqueeze(0).expand({M, M, D / 2});  // [i, j] -> p_j
  const auto row = sincos_1d(D / 2, p).unsqueeze(1).expand({M, M, D / 2});  // [i, j] -> p_i
  return torch::cat({col, row}, 2).reshape({1, M * M, D}).to(torch::kFloat32);
}

SD3TransformerImpl::SD3TransformerImpl(const SD3TransformerOptions& options, torch::Dtype dtype,
                                       std::string weights_dir)
    : options_(SD3TransformerOptions::from_json(options.to_json())),
      dtype_(dtype),
      weights_(std::move(weights_dir)) {
  const auto& o = options_;
  const int64_t D = o.dim(), P = o.patch_size(), M = o.pos_embed_max_size();
  // pos_embed: PatchEmbed's conv and its (frozen, stored) position table.
  auto pos_embed = register_module("pos_embed", std::make_shared<torch::nn::Module>());
  patch_proj_ = pos_embed->register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), D, P).stride(P)));
  pos_table_ = pos_embed->register_buffer("pos_embed", torch::zeros({1, M * M, D}));
  // time_text_embed: the time and pooled-text MLPs.
  auto tte = register_module("time_text_embed", std::make_shared<torch::nn::Module>());
  auto time = tte->register_module("timestep_embedder", std::make_shared<torch::nn::Module>());
  time_1_ = time->register_module("linear_1", torch::nn::Linear(kTimeChannels, D));
  time_2_ = time->register_module("linear_2", torch::nn::Linear(D, D));
  auto text = tte->register_module("text_embedder", std::make_shared<torch::nn::Module>());
  text_1_ = text->register_module("linear_1", torch::nn::Linear(o.pooled_projection_dim(), D));
  text_2_ = text->register_module("linear_2", torch::nn::Linear(D, D));
  context_embedder_ =
      register_module("context_embedder", torch::nn::Linear(o.joint_attention_dim(), D));
  const auto& dual = o.dual_attention_layers();
  for (int64_t i = 0; i < o.num_layers(); ++i)
    blocks_->push_back(sd3::JointBlock(
        D, o.num_attention_heads(), /*last=*/i == o.num_layers() - 1,
        /*dual=*/std::find(dual.begin(), dual.end(), i) != dual.end(), !o.qk_norm().empty()));
  register_module("transformer_blocks", blocks_);
  auto norm_out = register_module("norm_out", std::make_shared<torch::nn::Module>());
  norm_out_ = norm_out->register_module("linear", torch::nn::Linear(D, 2 * D));
  proj_out_ = register_module("proj_out", torch::nn::Linear(D, P * P * o.out_channels()));
  to(dtype_);
  Rng rng(0);
  reset_parameters(rng);
}

nlohmann::json SD3TransformerImpl::spec() const {
  nlohmann::json s = {
      {"type", "sd3"}, {"config", options_.to_json()}, {"dtype", dtype_name(dtype_)}};
  if (!weights_.empty()) s["weights"] = weights_.dir();
  if (checkpointing_) s["gradient_checkpointing"] = true;
  return s;
}

void SD3TransformerImpl::reset_parameters(Rng& rng) {
  if (!weights_.empty()) {
    weights_.load(*this);  // the files are this model's initial weights
    return;
  }
  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* l = m->as<torch::nn::LinearImpl>()) init_layer_uniform(l->weight, l->bias, rng);
    if (auto* c = m->as<torch::nn::Conv2dImpl>()) init_layer_uniform(c->weight, c->bias, rng);
    if (auto* n = m->as<sd3::RMSNormImpl>()) n->weight.fill_(1.0);
  }
  pos_table_.copy_(sd3_position_table(options_));
}

std::vector<std::string> SD3TransformerImpl::tensors_from_files() const {
  if (!weights_.empty() && weights_.unchanged(*this)) return {""};
  return {};
}

torch::Tensor SD3TransformerImpl::conditioning(const torch::Tensor& t,
                                               const torch::Tensor& pooled) {
  const auto dt = time_1_->weight.scalar_type();
  // c = MLP_time(sinusoid(1000 t)) + MLP_text(pooled): [B, D]
  auto c_time = layer_forward(*time_1_, time_embedding(1000.0 * t).to(dt));
  c_time = layer_forward(*time_2_, torch::silu(c_time));
  auto c_text = layer_forward(*text_2_, torch::silu(layer_forward(*text_1_, pooled.to(dt))));
  return c_time + c_text;
}

torch::Tensor SD3TransformerImpl::patchify(const torch::Tensor& x) {
  const int64_t P = options_.patch_size(), M = options_.pos_embed_max_size(), D = options_.dim();
  const int64_t h = x.size(2) / P, w = x.size(3) / P;
  // [B, D, h, w] -> [B, h w, D] (tokens row-major), laid out token by token: the transpose is
  // copied once here, so that every layer after it reads contiguous [B, N, D] rows (a transposed
  // view would carry its strides through every residual sum and block the one-pass kernels).
  auto z = layer_forward(*patch_proj_, x).flatten(2).transpose(1, 2).contiguous();
  // The centre h x w crop of the M x M table: top = (M - h) / 2, left = (M - w) / 2.
  const int64_t top = (M - h) / 2, left = (M - w) / 2;
  auto pos = pos_table_.reshape({1, M, M, D})
                 .slice(1, top, top + h)
                 .slice(2, left, left + w)
                 .reshape({1, h * w, D});
  return z + pos.to(z.scalar_type());
}

torch::Tensor SD3TransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                          const Condition& cond) {
  const auto& o = options_;
  const int64_t P = o.patch_size(), M = o.pos_embed_max_size();
  TORCH_CHECK(x.dim() == 4 && x.size(1) == o.in_channels(), "SD3Transformer: x must be [B, ",
              o.in_channels(), ", H, W], got ", x.sizes());
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  TORCH_CHECK(H % P == 0 && W % P == 0, "SD3Transformer: latents ", H, " x ", W,
              " are not divisible by the patch size ", P);
  TORCH_CHECK(H / P <= M && W / P <= M, "SD3Transformer: latents ", H, " x ", W,
              " exceed the position table's ", M, " x ", M, " patches");
  TORCH_CHECK(t.dim() == 1 && t.size(0) == B, "SD3Transformer: t must be [", B, "], got ",
              t.sizes());
  const auto& context = cond.at("context");
  const auto& pooled = cond.at("pooled");
  TORCH_CHECK(
      context.dim() == 3 && context.size(0) == B && context.size(2) == o.joint_attention_dim(),
      "SD3Transformer: context must be [", B, ", L, ", o.joint_attention_dim(), "], got ",
      context.sizes());
  TORCH_CHECK(
      pooled.dim() == 2 && pooled.size(0) == B && pooled.size(1) == o.pooled_projection_dim(),
      "SD3Transformer: pooled must be [", B, ", ", o.pooled_projection_dim(), "], got ",
      pooled.sizes());
  const auto c = conditioning(t, pooled);                          // [B, D]
  auto z = patchify(x.to(dtype_));                                 // [B, N, D]
  auto e = layer_forward(*context_embedder_, context.to(dtype_));  // [B, L, D]
  for (auto& block : *blocks_) {
    auto& b = *block->as<sd3::JointBlock>();
    std::tie(z, e) = checkpointing_ ? sd3::checkpointed(b, z, e, c) : b.forward(z, e, c);
  }
  // norm_out is AdaLayerNormContinuous: (scale, shift), scale first.
  const auto ss = layer_forward(*norm_out_, torch::silu(c)).chunk(2, 1);  // each [B, D]
  z = sd3::norm_modulate(z, ss[1], ss[0]);
  z = layer_forward(*proj_out_, z);  // [B, h w, P P C], each token ordered [py][px][c]
  const int64_t h = H / P, w = W / P, C = o.out_channels();
  return z.reshape({B, h, w, P, P, C})
      .permute({0, 5, 1, 3, 2, 4})  // [B, C, h, py, w, px]
      .reshape({B, C, H, W})
      .to(x.scalar_type());
}

}  // namespace ramflow
