// The toy learned decoder (see include/ramflow/mlp_decoder.h).
#include "ramflow/mlp_decoder.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/init.h"

namespace ramflow {

nlohmann::json MLPDecoderOptions::to_json() const {
  return {{"type", "mlp"}, {"latent_dim", latent_dim_}, {"dim", dim_}, {"hidden", hidden_}};
}

MLPDecoderOptions MLPDecoderOptions::from_json(const nlohmann::json& spec) {
  SpecReader r(spec, "decoder 'mlp'");
  r.text("type", "mlp");
  auto integer = [&](const std::string& key, double def) {
    const double v = r.number(key, def);
    if (v < 1 || v != std::floor(v))
      throw ConfigError("decoder 'mlp': field '" + key + "' must be an integer >= 1");
    return static_cast<int64_t>(v);
  };
  MLPDecoderOptions o(integer("latent_dim", -1), integer("dim", -1));
  o.hidden(integer("hidden", 32));
  r.finish();
  return o;
}

MLPDecoderImpl::MLPDecoderImpl(const MLPDecoderOptions& options) : options_(options) {
  in_ = register_module("in", torch::nn::Linear(options_.latent_dim(), options_.hidden()));
  out_ = register_module("out", torch::nn::Linear(options_.hidden(), options_.dim()));
  skip_ = register_module(
      "skip", torch::nn::Linear(
                  torch::nn::LinearOptions(options_.latent_dim(), options_.dim()).bias(false)));
  Rng rng(0);
  reset_parameters(rng);
}

void MLPDecoderImpl::reset_parameters(Rng& rng) {
  // PyTorch's Linear default for the perceptron; the skip starts as the identity on the first
  // min(d, D) coordinates, so the decoder is near a rotation-free embedding.
  init_layer_uniform(in_->weight, in_->bias, rng);
  init_layer_uniform(out_->weight, out_->bias, rng);
  torch::NoGradGuard no_grad;
  skip_->weight.copy_(torch::eye(options_.dim(), options_.latent_dim()));
}

std::vector<int64_t> MLPDecoderImpl::decoded_shape(const std::vector<int64_t>& latent_shape) const {
  if (latent_shape != std::vector<int64_t>{options_.latent_dim()})
    throw ConfigError("decoder 'mlp' decodes latents of shape [" +
                      std::to_string(options_.latent_dim()) + "], the samples have another shape");
  return {options_.dim()};
}

torch::Tensor MLPDecoderImpl::forward(const torch::Tensor& z) {
  TORCH_CHECK(z.dim() == 2 && z.size(1) == options_.latent_dim(), "MLPDecoder: z must be [B, ",
              options_.latent_dim(), "], got ", z.sizes());
  return out_(torch::tanh(in_(z))) + skip_(z);  // [B, D]
}

}  // namespace ramflow
