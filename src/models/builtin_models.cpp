// The list of built-in models: one line per model. Adding a model = one file + one line here.
#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/exact_mixture_velocity.h"
#include "ramflow/lora.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/sd3_char.h"
#include "ramflow/sd3_transformer.h"
#include "ramflow/text_mlp_velocity.h"
#include "ramflow/unet.h"

namespace ramflow {
namespace {

void register_builtin_models(Registry<ModelFactory>& r) {
  r.add(
      "mlp",
      [](const nlohmann::json& spec) -> VelocityFieldPtr {
        return MLPVelocity(MLPVelocityOptions::from_json(spec)).ptr();
      },
      "MLP with Fourier time features (low-dimensional data)");
  r.add(
      "text_mlp",
      [](const nlohmann::json& spec) -> VelocityFieldPtr {
        return TextMLPVelocity(TextMLPVelocityOptions::from_json(spec)).ptr();
      },
      "MLP reading prompt embeddings (context, pooled) (low-dimensional data)");
  r.add(
      "unet",
      [](const nlohmann::json& spec) -> VelocityFieldPtr {
        return UNet(UNetOptions::from_json(spec)).ptr();
      },
      "class-conditional U-Net (images [C, H, W])");
  r.add("sd3", make_sd3_transformer,
        "Stable Diffusion 3 / 3.5's MM-DiT (diffusers' SD3Transformer2DModel; fields: config, "
        "dtype, weights)");
  r.add("sd3_char", make_sd3_char,
        "SD3's MM-DiT with a character text encoder of its own (prompts of letters A-Z; fields: "
        "encoder, config)");
  r.add(
      "exact_mixture",
      [](const nlohmann::json& spec) -> VelocityFieldPtr {
        SpecReader s(spec, "model 'exact_mixture'");
        s.text("type");
        auto m = GaussianMixture::from_json(s.value("mixture"), "model 'exact_mixture': mixture");
        s.finish();
        return ExactMixtureVelocity(std::move(m)).ptr();
      },
      "closed-form velocity of Gaussian-mixture data (no parameters)");
  r.add(
      "lora",
      [](const nlohmann::json& spec) -> VelocityFieldPtr {
        SpecReader s(spec, "model 'lora'");
        s.text("type");
        const nlohmann::json& base = s.value("base");
        for (const char* key : {"rank", "alpha", "targets"})
          if (s.has(key)) s.value(key);
        s.finish();
        if (!base.is_object() || !base.contains("type") || !base["type"].is_string())
          throw ConfigError(
              "model 'lora': field 'base' must be a model spec with a string \"type\"");
        return LoraVelocityField(models().get(base["type"].get<std::string>())(base),
                                 LoraOptions::from_json(spec))
            .ptr();
      },
      "LoRA adapters on a base model's Conv2d and Linear layers (fields: base, rank, alpha, "
      "targets)");
}

}  // namespace

const Registry<ModelFactory>& models() {
  static const Registry<ModelFactory> registry = [] {
    Registry<ModelFactory> r("model");
    register_builtin_models(r);
    return r;
  }();
  return registry;
}

}  // namespace ramflow
