// TextMLPVelocity (see include/ramflow/text_mlp_velocity.h).
#include "ramflow/text_mlp_velocity.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/init.h"
#include "ramflow/lora_branch.h"

namespace ramflow {

nlohmann::json TextMLPVelocityOptions::to_json() const {
  return {{"type", "text_mlp"},
          {"dim", dim_},
          {"context_dim", context_dim_},
          {"pooled_dim", pooled_dim_},
          {"text_dim", text_dim_},
          {"hidden", hidden_},
          {"depth", depth_},
          {"frequencies", frequencies_}};
}

TextMLPVelocityOptions TextMLPVelocityOptions::from_json(const nlohmann::json& spec) {
  SpecReader r(spec, "model 'text_mlp'");
  r.text("type", "text_mlp");
  auto integer = [&](const std::string& key, double def, double min) {
    const double v = r.number(key, def);
    if (v < min || v != std::floor(v))
      throw ConfigError("model 'text_mlp': field '" + key +
                        "' must be an integer >= " + std::to_string(static_cast<int>(min)));
    return static_cast<int64_t>(v);
  };
  TextMLPVelocityOptions o(integer("dim", -1, 1), integer("context_dim", -1, 1),
                           integer("pooled_dim", -1, 1));
  o.text_dim(integer("text_dim", 16, 1))
      .hidden(integer("hidden", 128, 1))
      .depth(integer("depth", 3, 1))
      .frequencies(integer("frequencies", 8, 0));
  r.finish();
  return o;
}

TextMLPVelocityImpl::TextMLPVelocityImpl(const TextMLPVelocityOptions& options)
    : options_(options) {
  freqs_ = register_buffer(
      "freqs", torch::pow(2.0, torch::arange(options_.frequencies(), torch::kFloat)) * M_PI);
  context_proj_ = register_module("context_proj",
                                  torch::nn::Linear(options_.context_dim(), options_.text_dim()));
  pooled_proj_ = register_module(
      "pooled_proj",
      torch::nn::Linear(
          torch::nn::LinearOptions(options_.pooled_dim(), options_.text_dim()).bias(false)));
  int64_t in = options_.dim() + 2 * options_.frequencies() + options_.text_dim();
  for (int64_t l = 0; l < options_.depth(); ++l) {
    layers_->push_back(torch::nn::Linear(in, options_.hidden()));
    in = options_.hidden();
  }
  layers_->push_back(torch::nn::Linear(in, options_.dim()));
  register_module("layers", layers_);
  Rng rng(0);
  reset_parameters(rng);
}

void TextMLPVelocityImpl::reset_parameters(Rng& rng) {
  init_layer_uniform(context_proj_->weight, context_proj_->bias, rng);
  init_layer_uniform(pooled_proj_->weight, pooled_proj_->bias, rng);
  for (auto& module : *layers_) {
    auto* layer = module->as<torch::nn::Linear>();
    init_layer_uniform(layer->weight, layer->bias, rng);
  }
}

torch::Tensor TextMLPVelocityImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                           const Condition& cond) {
  const int64_t B = x.size(0);
  TORCH_CHECK(x.numel() == B * options_.dim(), "TextMLPVelocity: x has shape ", x.sizes(),
              ", expected [B, ...] with ", options_.dim(), " values per sample");
  TORCH_CHECK(t.dim() == 1 && t.size(0) == B, "TextMLPVelocity: t has shape ", t.sizes(),
              ", expected [", B, "]");
  TORCH_CHECK(cond.defined() && cond.size() == B && cond.has("context") && cond.has("pooled"),
              "TextMLPVelocity: needs a condition with context [B, L, C] and pooled [B, P] per "
              "sample, B = ",
              B);
  const auto& context = cond.at("context");  // [B, L, C]
  const auto& pooled = cond.at("pooled");    // [B, P]
  TORCH_CHECK(context.dim() == 3 && context.size(2) == options_.context_dim(),
              "TextMLPVelocity: context must be [", B, ", L, ", options_.context_dim(), "], got ",
              context.sizes());
  TORCH_CHECK(pooled.dim() == 2 && pooled.size(1) == options_.pooled_dim(),
              "TextMLPVelocity: pooled must be [", B, ", ", options_.pooled_dim(), "], got ",
              pooled.sizes());
  auto c = layer_forward(*context_proj_, context.to(x.dtype()).mean(1)) +
           layer_forward(*pooled_proj_, pooled.to(x.dtype()));  // [B, E]
  auto phase = t.to(x.dtype()).unsqueeze(1) * freqs_;           // [B, F]
  // [B, D + 2F + E]
  auto h = torch::cat({x.reshape({B, options_.dim()}), torch::sin(phase), torch::cos(phase), c}, 1);
  const size_t L = layers_->size();
  for (size_t l = 0; l < L; ++l) {
    h = layer_forward(*layers_[l]->as<torch::nn::Linear>(), h);
    if (l + 1 < L) h = torch::silu(h);
  }
  return h.view(x.sizes());  // [B, ...D]
}

}  // namespace ramflow
