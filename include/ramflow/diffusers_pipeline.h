#pragma once
// A diffusers Stable Diffusion 3 / 3.5 pipeline folder as a base model: its transformer/ (the
// velocity field, model 'sd3'), vae/ (the decoder 'vae') and scheduler/ (the sampling grid). The
// text encoders are not read: prompts come as embeddings (prompt_task.h).
//   DIR/model_index.json                     "_class_name": "StableDiffusion3Pipeline"
//   DIR/transformer/config.json + weights     SD3Transformer2DModel
//   DIR/vae/config.json + weights             AutoencoderKL
//   DIR/scheduler/scheduler_config.json       FlowMatchEulerDiscreteScheduler (its shift)
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/sd3_transformer.h"
#include "ramflow/vae_decoder.h"

namespace ramflow {

struct DiffusersPipeline {
  std::string dir;
  SD3TransformerOptions transformer;
  VAEDecoderOptions vae;
  double shift = 3.0;  // the scheduler's time shift (its num_train_timesteps is 1000: checked)

  /// The velocity field's spec: {"type": "sd3", "weights": DIR/transformer, "dtype"}.
  nlohmann::json transformer_spec(torch::Dtype dtype) const;
  /// The decoder's spec: {"type": "vae", "weights": DIR/vae, "dtype"}.
  nlohmann::json decoder_spec(torch::Dtype dtype) const;
  /// The latent shape [C, H / f, W / f] of H x W images (0 x 0: the transformer's sample_size
  /// latents, diffusers' default). ConfigError unless H and W are multiples of f P (the VAE's
  /// factor times the patch size) and the latents fit the position table.
  std::vector<int64_t> latent_shape(int64_t height = 0, int64_t width = 0) const;
};

/// Whether `dir` is a diffusers pipeline folder (it has a model_index.json).
bool is_diffusers_pipeline(const std::string& dir);

/// Reads and checks a pipeline folder: every file above (InputError naming the missing one or the
/// wrong class), the configs (ConfigError naming the file), the transformer's and VAE's weight
/// files present (their tensors are read when the models are built). The transformer's
/// in_channels must be the VAE's latent_channels.
DiffusersPipeline read_diffusers_pipeline(const std::string& dir);

}  // namespace ramflow
