// SD3's transformer with a character encoder (see include/ramflow/sd3_char.h).
#include "ramflow/sd3_char.h"

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/strings.h"

namespace ramflow {

SD3CharImpl::SD3CharImpl(const CharEncoderOptions& encoder,
                         const SD3TransformerOptions& transformer) {
  if (transformer.joint_attention_dim() != encoder.dim() ||
      transformer.pooled_projection_dim() != encoder.dim())
    throw ConfigError("model 'sd3_char': the transformer's joint_attention_dim (" +
                      std::to_string(transformer.joint_attention_dim()) +
                      ") and pooled_projection_dim (" +
                      std::to_string(transformer.pooled_projection_dim()) +
                      ") must equal the encoder's dim (" + std::to_string(encoder.dim()) + ")");
  encoder_ = register_module("text_encoder", CharEncoder(encoder));
  transformer_ = register_module("transformer", SD3Transformer(transformer));
}

torch::Tensor SD3CharImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                   const Condition& cond) {
  const auto text = encoder_->forward(cond.at("tokens"));  // context [B, L + 1, E], pooled [B, E]
  return transformer_->forward(
      x, t, Condition(cond.id(), {{"context", text.context}, {"pooled", text.pooled}}));
}

nlohmann::json SD3CharImpl::spec() const {
  return {{"type", "sd3_char"},
          {"encoder", encoder_->options().to_json()},
          {"config", transformer_->options().to_json()}};
}

void SD3CharImpl::reset_parameters(Rng& rng) {
  encoder_->reset_parameters(rng);
  transformer_->reset_parameters(rng);
  // adaLN-Zero: the modulations (norm1, norm1_context, norm_out) and the output projection start
  // at 0.
  torch::NoGradGuard no_grad;
  for (auto& p : transformer_->named_parameters()) {
    const std::string& name = p.key();
    if (name.find("norm1.linear.") != std::string::npos ||
        name.find("norm1_context.linear.") != std::string::npos ||
        starts_with_any(name, {"norm_out.linear.", "proj_out."}))
      p.value().zero_();
  }
}

VelocityFieldPtr make_sd3_char(const nlohmann::json& spec) {
  SpecReader r(spec, "model 'sd3_char'");
  r.text("type");
  const auto encoder = CharEncoderOptions::from_json(
      r.has("encoder") ? r.value("encoder") : nlohmann::json::object(),
      "model 'sd3_char': encoder");
  nlohmann::json config = r.value("config");
  if (!config.is_object()) throw ConfigError("model 'sd3_char': field 'config' must be an object");
  for (const char* key : {"joint_attention_dim", "pooled_projection_dim"})
    if (!config.contains(key)) config[key] = encoder.dim();
  r.finish();
  return SD3Char(encoder, SD3TransformerOptions::from_json(config, "model 'sd3_char': config"))
      .ptr();
}

}  // namespace ramflow
