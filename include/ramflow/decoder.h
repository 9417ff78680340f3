#pragma once
// The decoder stage: it stands between the model's samples and everything that scores or shows
// them. A latent model samples z [B, ...latent shape]; rewards, judges, metrics and pictures see x
// = decode(z) [B, ...decoded shape]. The default is the identity (the model samples what is
// scored). A decoder is frozen in post-training, and differentiable: a method that needs the
// reward's gradient (DRaFT, Adjoint Matching, EAM) gets grad_z r(decode(z)) by autograd through it
// (decoded_reward.h). Decoders are built from JSON specs {"type": <registry name>, ...fields}, like
// models; a checkpoint records the spec of the decoder its run used.
#include <functional>
#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <nlohmann/json.hpp>

#include "ramflow/registry.h"
#include "ramflow/rng.h"

namespace ramflow {

class DecoderImpl : public torch::nn::Module {
 public:
  /// z [B, ...latent shape] -> x [B, ...decoded shape], differentiable in z (and in the
  /// parameters).
  virtual torch::Tensor forward(const torch::Tensor& z) = 0;
  /// The shape of one decoded sample, given the shape of one latent; throws ConfigError if the
  /// decoder does not take latents of that shape.
  virtual std::vector<int64_t> decoded_shape(const std::vector<int64_t>& latent_shape) const = 0;
  /// The spec that rebuilds this decoder: {"type": <registry name>, ...options}.
  virtual nlohmann::json spec() const = 0;
  /// Draws every parameter afresh from `rng`; the default accepts only decoders without parameters.
  virtual void reset_parameters(Rng& rng);
};
using DecoderPtr = std::shared_ptr<DecoderImpl>;

using DecoderFactory = std::function<DecoderPtr(const nlohmann::json& spec)>;
/// Every registered decoder name (src/decoders/builtin_decoders.cpp).
const Registry<DecoderFactory>& decoders();
/// Builds a decoder from its spec, its parameters drawn by reset_parameters from Rng(init_seed),
/// frozen (no gradients for its parameters; gradients still flow to its input) and in eval mode.
DecoderPtr make_decoder(const nlohmann::json& spec, uint64_t init_seed = 0);

/// How a checkpoint records the decoder of its run (metadata field "decoder"): {"spec": ...,
/// "seed": ...}. A frozen decoder is a function of the two: its weights are drawn from the seed, or
/// read from the files its spec names.
nlohmann::json decoder_record(const nlohmann::json& spec, uint64_t init_seed);
/// The decoder a checkpoint's metadata records, or nullptr when it records none (the identity).
DecoderPtr decoder_from_meta(const nlohmann::json& meta);

/// decode(z) without autograd, in chunks of `chunk` samples, on the decoder's device; the result on
/// z's device. For evaluation and pictures.
torch::Tensor decode_samples(DecoderImpl& decoder, const torch::Tensor& z, int64_t chunk = 4096);

}  // namespace ramflow
