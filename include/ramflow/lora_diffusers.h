#pragma once
// LoRA adapters in diffusers' file format, which StableDiffusion3Pipeline.load_lora_weights reads
// and save_lora_weights writes (pytorch_lora_weights.safetensors):
//   tensors   "<component>.<layer>.lora_A.weight" [r, in], "<component>.<layer>.lora_B.weight"
//             [out, r], <component> the pipeline's ("transformer"), <layer> the module's PyTorch
//             name ("transformer_blocks.0.attn.to_q")
//   metadata  "lora_adapter_metadata": JSON of PEFT's LoraConfig fields, each prefixed
//             "<component>.": "transformer.r", "transformer.lora_alpha",
//             "transformer.target_modules", ... diffusers takes alpha from here alone (without it,
//             alpha = r: scale 1).
// The adapted layer computes W0 x + (alpha / r) B (A x), as lora.h.
#include <string>

#include "ramflow/lora.h"

namespace ramflow {

/// Writes `model`'s adapters to `path` (atomically) in the format above.
void save_diffusers_lora(const LoraVelocityFieldImpl& model, const std::string& path,
                         const std::string& component = "transformer");

/// Attaches the adapters of a diffusers LoRA file to `base`. InputError naming the file for a
/// tensor of another component or format, a layer the model lacks (the first one named), ranks
/// that differ, per-layer rank or alpha patterns, or a shape that does not fit the layer.
LoraVelocityField load_diffusers_lora(const std::string& path, VelocityFieldPtr base,
                                      const std::string& component = "transformer");

}  // namespace ramflow
