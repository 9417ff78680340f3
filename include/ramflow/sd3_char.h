#pragma once
// A text-to-image MM-DiT with its own prompt encoder: SD3's transformer (sd3_transformer.h) reading
// the context tokens and pooled vector of a character encoder (char_encoder.h), the way SD3 reads
// T5's and CLIP's. The base model of the `words` task, pretrained from scratch with its encoder;
// post-training keeps the encoder frozen (frozen_in_post_training), as SD3's text encoders are.
//
//   cond "tokens" [B, L] int64 --encoder--> context [B, L + 1, E], pooled [B, E]
//   v = transformer(x [B, C, H, W], t, {context, pooled})                       [B, C, H, W]
//
// Parameters: "text_encoder.*" (char_encoder.h's names) and "transformer.*" (diffusers' SD3 names).
// Initialisation (reset_parameters): the encoder's; the transformer's, then DiT's adaLN-Zero
// (Peebles & Xie 2023, section 3.2): every modulation layer and the output projection zero, so that
// each block starts as the identity and the first prediction is v = 0.
#include <torch/nn/pimpl.h>

#include "ramflow/char_encoder.h"
#include "ramflow/sd3_transformer.h"

namespace ramflow {

class SD3CharImpl : public VelocityFieldImpl {
 public:
  /// The transformer's joint_attention_dim and pooled_projection_dim must equal the encoder's dim
  /// (ConfigError otherwise).
  SD3CharImpl(const CharEncoderOptions& encoder, const SD3TransformerOptions& transformer);
  /// x [B, C, H, W], t [B], cond with "tokens" [B, L] -> v [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  /// {"type": "sd3_char", "encoder": {...}, "config": {SD3 config.json fields}}.
  nlohmann::json spec() const override;
  void reset_parameters(Rng& rng) override;
  /// {"text_encoder."}.
  std::vector<std::string> frozen_in_post_training() const override { return {"text_encoder."}; }
  const CharEncoderOptions& encoder_options() const { return encoder_->options(); }

 private:
  CharEncoder encoder_{nullptr};
  SD3Transformer transformer_{nullptr};
};
TORCH_MODULE(SD3Char);

/// The registry's factory: {"type": "sd3_char", "encoder": {CharEncoderOptions fields}, "config":
/// {SD3 config fields}}; joint_attention_dim and pooled_projection_dim default to the encoder's
/// dim.
VelocityFieldPtr make_sd3_char(const nlohmann::json& spec);

}  // namespace ramflow
