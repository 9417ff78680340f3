// MLPVelocity (see include/ramflow/mlp_velocity.h). Ref for the architecture: the RAM 2-D tutorial's
// VelocityNet (Linear(18->128)-SiLU-...-Linear(128->2)).
#include "ramflow/mlp_velocity.h"

#include <cmath>

#include <torch/torch.h>

#include "ramflow/config.h"

namespace ramflow {

nlohmann::json MLPVelocityOptions::to_json() const {
  return {{"type", "mlp"},         {"dim", dim_},
          {"hidden", hidden_},     {"depth", depth_},
          {"frequencies", frequencies_}, {"num_classes", num_classes_},
          {"class_dim", class_dim_}};
}

MLPVelocityOptions MLPVelocityOptions::from_json(const nlohmann::json& spec) {
  SpecReader r(spec, "model 'mlp'");
  r.text("type", "mlp");
  auto positive = [&](const std::string& key, double def, double min) {
    double v = r.number(key, def);
    if (v < min || v != std::floor(v))
      throw ConfigError("model 'mlp': field '" + key + "' must be an integer >= " +
                        std::to_string(static_cast<int>(min)));
    return static_cast<int64_t>(v);
  };
  MLPVelocityOptions o(positive("dim", -1, 1));
  o.hidden(positive("hidden", 128, 1))
      .depth(positive("depth", 3, 1))
      .frequencies(positive("frequencies", 8, 0))
      .num_classes(positive("num_classes", 0, 0))
      .class_dim(positive("class_dim", 16, 1));
  r.finish();
  return o;
}

MLPVelocityImpl::MLPVelocityImpl(const MLPVelocityOptions& options) : options_(options) {
  TORCH_CHECK(options.dim() >= 1 && options.hidden() >= 1 && options.depth() >= 1,
              "MLPVelocity: dim, hidden and depth must be >= 1");
  auto k = torch::arange(options.frequencies(), torch::kFloat);
  freqs_ = register_buffer("freqs", torch::pow(2.0, k) * M_PI);
  int64_t in = options.dim() + 2 * options.frequencies();
  if (options.num_classes() > 0) {
    class_embedding_ = register_module(
        "class_embedding", torch::nn::Embedding(options.num_classes(), options.class_dim()));
    in += options.class_dim();
  }
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.depth(); ++i) {
    layers_->push_back(torch::nn::Linear(i == 0 ? in : options.hidden(), options.hidden()));
  }
  layers_->push_back(torch::nn::Linear(options.hidden(), options.dim()));
}

torch::Tensor MLPVelocityImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                       const torch::Tensor& cond) {
  const int64_t B = x.size(0);
  TORCH_CHECK(x.numel() == B * options_.dim(), "MLPVelocity: x has shape ", x.sizes(),
              ", expected [B, ...] with ", options_.dim(), " values per sample");
  TORCH_CHECK(t.dim() == 1 && t.size(0) == B, "MLPVelocity: t has shape ", t.sizes(),
              ", expected [", B, "]");
  auto h = x.reshape({B, options_.dim()});                  // [B, D]
  auto phase = t.to(x.dtype()).unsqueeze(1) * freqs_;       // [B, F]
  std::vector<torch::Tensor> parts = {h, torch::sin(phase), torch::cos(phase)};
  if (options_.num_classes() > 0) {
    TORCH_CHECK(cond.defined() && cond.dim() == 1 && cond.size(0) == B,
                "MLPVelocity: a conditional model needs cond of shape [", B, "]");
    parts.push_back(class_embedding_->forward(cond.to(torch::kLong)));  // [B, E]
  }
  h = torch::cat(parts, /*dim=*/1);                          // [B, D + 2F (+ E)]
  const auto n = layers_->size();
  for (size_t i = 0; i < n; ++i) {
    auto* lin = layers_[i]->as<torch::nn::Linear>();
    h = torch::addmm(lin->bias, h, lin->weight.t());
    if (i + 1 < n) h = torch::silu(h);
  }
  return h.reshape(x.sizes());                               // [B, ...]
}

nlohmann::json MLPVelocityImpl::spec() const { return options_.to_json(); }

}  // namespace ramflow
