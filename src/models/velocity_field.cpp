// Velocity-field copies: clone, frozen reference, EMA (see include/ramflow/velocity_field.h).
#include "ramflow/velocity_field.h"

#include <torch/torch.h>

namespace ramflow {

void VelocityFieldImpl::reset_parameters(Rng&) {
  if (!parameters().empty())
    throw ConfigError("model '" + spec().value("type", std::string("?")) +
                      "' has parameters but does not override reset_parameters");
}

VelocityFieldPtr VelocityFieldImpl::clone_trainable() const { return clone_velocity_field(*this); }

VelocityFieldPtr make_velocity_field(const nlohmann::json& spec, uint64_t init_seed) {
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    throw ConfigError("model spec must be a JSON object with a string \"type\", got " +
                      spec.dump());
  auto model = models().get(spec["type"].get<std::string>())(spec);
  Rng rng(init_seed);
  model->reset_parameters(rng);
  return model;
}

void copy_weights(const VelocityFieldImpl& from, VelocityFieldImpl& to) {
  torch::NoGradGuard no_grad;
  auto src = from.named_parameters(/*recurse=*/true);
  for (auto& kv : to.named_parameters(/*recurse=*/true)) {
    const torch::Tensor* s = src.find(kv.key());
    TORCH_CHECK(s != nullptr, "copy_weights: source has no parameter '", kv.key(), "'");
    TORCH_CHECK(s->sizes() == kv.value().sizes(), "copy_weights: '", kv.key(), "' has shape ",
                s->sizes(), " in the source and ", kv.value().sizes(), " in the target");
    if (!kv.value().is_same(*s))
      kv.value().copy_(*s);  // a shared (LoRA base) tensor is already equal
  }
  auto src_buf = from.named_buffers(/*recurse=*/true);
  for (auto& kv : to.named_buffers(/*recurse=*/true)) {
    const torch::Tensor* s = src_buf.find(kv.key());
    TORCH_CHECK(s != nullptr, "copy_weights: source has no buffer '", kv.key(), "'");
    if (!kv.value().is_same(*s)) kv.value().copy_(*s);
  }
}

VelocityFieldPtr clone_velocity_field(const VelocityFieldImpl& model) {
  auto copy = make_velocity_field(model.spec());
  auto params = model.parameters();
  if (!params.empty()) copy->to(params.front().device());
  {
    // Each tensor in its source's dtype (a bfloat16 base beside float32 LoRA adapters stays so).
    torch::NoGradGuard no_grad;
    auto src_params = model.named_parameters(), src_buffers = model.named_buffers();
    for (auto& kv : copy->named_parameters())
      if (const auto* s = src_params.find(kv.key());
          s && s->scalar_type() != kv.value().scalar_type())
        kv.value().set_data(kv.value().to(s->scalar_type()));
    for (auto& kv : copy->named_buffers())
      if (const auto* s = src_buffers.find(kv.key());
          s && s->scalar_type() != kv.value().scalar_type())
        kv.value().set_data(kv.value().to(s->scalar_type()));
  }
  copy_weights(model, *copy);
  auto src = model.named_parameters();
  for (auto& kv : copy->named_parameters())
    kv.value().set_requires_grad(src[kv.key()].requires_grad());
  copy->train(model.is_training());
  return copy;
}

VelocityFieldPtr frozen_copy(const VelocityFieldImpl& model) {
  auto copy = model.clone_trainable();
  for (auto& p : copy->parameters()) p.set_requires_grad(false);
  copy->eval();
  return copy;
}

EMA::EMA(const VelocityFieldImpl& model, double decay, double ramp)
    : ema_(frozen_copy(model)), decay_(decay), ramp_(ramp) {
  TORCH_CHECK(decay >= 0.0 && decay < 1.0, "EMA: decay must be in [0, 1), got ", decay);
}

double EMA::next_decay() const {
  if (ramp_ <= 0.0) return decay_;
  return std::min(decay_, ramp_ * static_cast<double>(updates_));
}

void EMA::update(const VelocityFieldImpl& model) {
  torch::NoGradGuard no_grad;
  const double d = next_decay();
  auto src = model.named_parameters();
  for (auto& kv : ema_->named_parameters()) {
    const torch::Tensor& theta = src[kv.key()];
    if (kv.value().is_same(theta))
      continue;  // shared with the model (a LoRA base): nothing to average
    // theta_ema = d theta_ema + (1 - d) theta
    kv.value().mul_(d).add_(theta.detach(), 1.0 - d);
  }
  ++updates_;
}

int64_t parameter_count(const VelocityFieldImpl& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace ramflow
