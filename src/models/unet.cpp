// UNet (see include/ramflow/unet.h for the equations and the parameter names).
#include "ramflow/unet.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/init.h"
#include "ramflow/lora_branch.h"
#include "ramflow/task.h"

namespace ramflow {

nlohmann::json UNetOptions::to_json() const {
  return {{"type", "unet"},
          {"in_channels", in_channels_},
          {"image_size", image_size_},
          {"channels", channels_},
          {"mult", mult_},
          {"num_classes", num_classes_},
          {"attention", attention_},
          {"groups", groups_}};
}

UNetOptions UNetOptions::from_json(const nlohmann::json& spec) {
  SpecReader r(spec, "model 'unet'");
  r.text("type", "unet");
  auto integer = [&](const std::string& key, double def, double min) {
    const double v = r.number(key, def);
    if (v < min || v != std::floor(v) || v > 1e6)
      throw ConfigError("model 'unet': field '" + key + "' must be an integer >= " +
                        std::to_string(static_cast<int>(min)) + ", got " + std::to_string(v));
    return static_cast<int64_t>(v);
  };
  UNetOptions o;
  o.in_channels(integer("in_channels", 1, 1))
      .image_size(integer("image_size", 28, 1))
      .channels(integer("channels", 16, 1))
      .num_classes(integer("num_classes", 0, 0))
      .groups(integer("groups", 8, 1));
  std::vector<int64_t> mult;
  for (double m : r.numbers("mult", std::vector<double>{1, 2, 4})) {
    if (m < 1 || m != std::floor(m))
      throw ConfigError("model 'unet': 'mult' must hold integers >= 1");
    mult.push_back(static_cast<int64_t>(m));
  }
  if (mult.empty()) throw ConfigError("model 'unet': 'mult' must name at least one level");
  o.mult(mult);
  if (r.has("attention")) {
    const auto& a = r.value("attention");
    if (!a.is_boolean()) throw ConfigError("model 'unet': 'attention' must be true or false");
    o.attention(a.get<bool>());
  }
  r.finish();
  const int64_t scale = int64_t{1} << (mult.size() - 1);
  if (o.image_size() % scale != 0)
    throw ConfigError("model 'unet': image_size " + std::to_string(o.image_size()) +
                      " must be divisible by 2^" + std::to_string(mult.size() - 1) + " = " +
                      std::to_string(scale) + " (one halving per level)");
  if (o.channels() % 2 != 0)
    throw ConfigError("model 'unet': 'channels' must be even (sin and cos halves)");
  for (int64_t m : mult)
    if ((o.channels() * m) % o.groups() != 0)
      throw ConfigError(
          "model 'unet': every width channels * mult[i] must be a multiple of groups = " +
          std::to_string(o.groups()));
  return o;
}

namespace {
constexpr int64_t kHeadDim = 32;  // attention head width d
constexpr double kGroupNormEps = 1e-5;

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}
torch::nn::GroupNorm group_norm(int64_t groups, int64_t width) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, width).eps(kGroupNormEps));
}
}  // namespace

UNetBlockImpl::UNetBlockImpl(int64_t in, int64_t out, int64_t emb_dim, int64_t groups,
                             bool attention, int resample, int64_t up_out)
    : resample_mode_(resample) {
  norm1 = register_module("norm1", group_norm(groups, in));
  conv1 = register_module("conv1", conv3x3(in, out));
  emb_proj = register_module("emb_proj", torch::nn::Linear(emb_dim, out));
  norm2 = register_module("norm2", group_norm(groups, out));
  conv2 = register_module("conv2", conv3x3(out, out));
  if (in != out)
    skip = register_module("skip", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
  if (attention) {
    TORCH_CHECK(out % kHeadDim == 0, "UNet: attention needs a width divisible by ", kHeadDim,
                ", got ", out);
    norm_attn = register_module("norm_attn", group_norm(groups, out));
    qkv = register_module("qkv", torch::nn::Linear(out, 3 * out));
    proj = register_module("proj", torch::nn::Linear(out, out));
  }
  if (resample < 0) resample_conv = register_module("resample", conv3x3(out, out, 2));
  if (resample > 0) resample_conv = register_module("resample", conv3x3(out, up_out));
}

torch::Tensor UNetBlockImpl::block(const torch::Tensor& h, const torch::Tensor& emb) {
  auto a = layer_forward(*conv1, torch::silu(norm1(h)));  // [B, out, H, W]
  a = a +
      layer_forward(*emb_proj, torch::silu(emb)).unsqueeze(-1).unsqueeze(-1);  // + [B, out, 1, 1]
  auto out = (skip ? layer_forward(*skip, h) : h) +
             layer_forward(*conv2, torch::silu(norm2(a)));  // [B, out, H, W]
  if (!qkv) return out;
  // Self-attention over the N = H W positions, heads of width d.
  const int64_t B = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3), N = H * W;
  const int64_t heads = C / kHeadDim;
  auto seq = norm_attn(out).flatten(2).transpose(1, 2);  // [B, N, C]
  auto q_k_v = layer_forward(*qkv, seq)
                   .reshape({B, N, 3, heads, kHeadDim})
                   .permute({2, 0, 3, 1, 4});  // [3, B, h, N, d]
  // softmax(q k^T / sqrt(d)): [B, h, N, N]
  auto att = torch::softmax(torch::matmul(q_k_v[0], q_k_v[1].transpose(-1, -2)) /
                                std::sqrt(static_cast<double>(kHeadDim)),
                            -1);
  auto y = torch::matmul(att, q_k_v[2]).permute({0, 2, 1, 3}).reshape({B, N, C});  // [B, N, C]
  return out + layer_forward(*proj, y).transpose(1, 2).reshape({B, C, H, W});
}

torch::Tensor UNetBlockImpl::resample(const torch::Tensor& h) {
  if (resample_mode_ == 0) return h;
  if (resample_mode_ < 0) return layer_forward(*resample_conv, h);  // [B, out, H/2, W/2]
  auto up = torch::nn::functional::interpolate(h, torch::nn::functional::InterpolateFuncOptions()
                                                      .scale_factor(std::vector<double>{2.0, 2.0})
                                                      .mode(torch::kNearest));  // [B, out, 2H, 2W]
  return layer_forward(*resample_conv, up);  // [B, up_out, 2H, 2W]
}

UNetImpl::UNetImpl(const UNetOptions& options)
    : options_(UNetOptions::from_json(options.to_json())) {
  const int64_t c0 = options_.channels(), E = 4 * c0,
                L = static_cast<int64_t>(options_.mult().size());
  const int64_t G = options_.groups();
  std::vector<int64_t> c;
  for (int64_t m : options_.mult()) c.push_back(c0 * m);
  // w_k = 10000^(-k / (c0/2)), k = 0 .. c0/2 - 1
  freqs_ = register_buffer("freqs",
                           torch::exp(-std::log(10000.0) * torch::arange(c0 / 2, torch::kFloat) /
                                      static_cast<double>(c0 / 2)));
  conv_in = register_module("conv_in", conv3x3(options_.in_channels(), c0));
  time_mlp = register_module(
      "time_mlp",
      torch::nn::Sequential(torch::nn::Linear(c0, E), torch::nn::SiLU(), torch::nn::Linear(E, E)));
  if (options_.num_classes() > 0)
    class_emb = register_module("class_emb", torch::nn::Embedding(options_.num_classes() + 1, E));
  down = register_module("down", torch::nn::ModuleList());
  int64_t width = c0;
  for (int64_t i = 0; i < L; ++i) {
    down->push_back(UNetBlock(width, c[i], E, G, false, i < L - 1 ? -1 : 0, 0));
    width = c[i];
  }
  mid = register_module("mid", torch::nn::ModuleList());
  mid->push_back(UNetBlock(width, width, E, G, options_.attention(), 0, 0));
  mid->push_back(UNetBlock(width, width, E, G, false, 0, 0));
  up = register_module("up", torch::nn::ModuleList());
  for (int64_t i = L - 1; i >= 0; --i) {
    up->push_back(UNetBlock(width + c[i], c[i], E, G, false, i > 0 ? 1 : 0, i > 0 ? c[i - 1] : 0));
    width = i > 0 ? c[i - 1] : c[i];
  }
  norm_out = register_module("norm_out", group_norm(G, c[0]));
  conv_out = register_module("conv_out", conv3x3(c[0], options_.in_channels()));
  Rng rng(0);
  reset_parameters(rng);
}

nlohmann::json UNetImpl::spec() const { return options_.to_json(); }

void UNetImpl::reset_parameters(Rng& rng) {
  torch::NoGradGuard no_grad;
  // In registration order (named_modules is deterministic), drawn on the CPU, then copied.
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    auto* m = item.value().get();
    if (auto* conv = dynamic_cast<torch::nn::Conv2dImpl*>(m)) {
      init_layer_uniform(conv->weight, conv->bias, rng);
    } else if (auto* lin = dynamic_cast<torch::nn::LinearImpl*>(m)) {
      init_layer_uniform(lin->weight, lin->bias, rng);
    } else if (auto* gn = dynamic_cast<torch::nn::GroupNormImpl*>(m)) {
      gn->weight.fill_(1.0);
      gn->bias.fill_(0.0);
    } else if (auto* emb = dynamic_cast<torch::nn::EmbeddingImpl*>(m)) {
      emb->weight.copy_(rng.randn(emb->weight.sizes()));
    }
  }
  // Zero starts: every block an identity, the network v = 0.
  auto zero = [](auto& layer) {
    if (layer) {
      layer->weight.zero_();
      layer->bias.zero_();
    }
  };
  for (auto* list : {&down, &mid, &up})
    for (const auto& child : **list) {
      auto* b = child->as<UNetBlockImpl>();
      zero(b->conv2);
      zero(b->proj);
    }
  zero(conv_out);
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                const Condition& cond) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels() &&
                  x.size(2) == options_.image_size() && x.size(3) == options_.image_size(),
              "UNet: x must be [B, ", options_.in_channels(), ", ", options_.image_size(), ", ",
              options_.image_size(), "], got ", x.sizes());
  const int64_t B = x.size(0);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == B, "UNet: t must be [", B, "], got ", t.sizes());
  auto phase = (1000.0 * t.to(x.dtype())).unsqueeze(1) * freqs_;  // [B, c0/2]
  // time_mlp = Linear, SiLU, Linear (a Sequential for the parameter names), its layers called one
  // by one.
  auto emb = layer_forward(*time_mlp[0]->as<torch::nn::Linear>(),
                           torch::cat({torch::sin(phase), torch::cos(phase)}, 1));
  emb = layer_forward(*time_mlp[2]->as<torch::nn::Linear>(), torch::silu(emb));  // [B, E]
  if (class_emb) {
    auto labels = labels_of(cond, B, "UNet");  // [B]
    TORCH_CHECK(labels.min().item<int64_t>() >= kNullId &&
                    labels.max().item<int64_t>() < options_.num_classes(),
                "UNet: labels must be in [0, ", options_.num_classes(), ") or ", kNullId);
    // The null label (kNullId = -1) selects the last row, the unconditional embedding.
    labels =
        torch::where(labels == kNullId, torch::full_like(labels, options_.num_classes()), labels);
    emb = emb + class_emb(labels);  // [B, E]
  }
  auto h = layer_forward(*conv_in, x);  // [B, c0, H, W]
  std::vector<torch::Tensor> skips;
  for (const auto& child : *down) {
    auto* b = child->as<UNetBlockImpl>();
    h = b->block(h, emb);  // [B, c_i, H_i, W_i]
    skips.push_back(h);
    h = b->resample(h);  // [B, c_i, H_i/2, W_i/2]
  }
  for (const auto& child : *mid) h = child->as<UNetBlockImpl>()->block(h, emb);
  for (const auto& child : *up) {
    auto* b = child->as<UNetBlockImpl>();
    h = b->block(torch::cat({h, skips.back()}, 1), emb);  // [B, c_i, H_i, W_i]
    skips.pop_back();
    h = b->resample(h);  // [B, c_{i-1}, 2H_i, 2W_i]
  }
  return layer_forward(*conv_out, torch::silu(norm_out(h)));  // [B, C, H, W]
}

}  // namespace ramflow
