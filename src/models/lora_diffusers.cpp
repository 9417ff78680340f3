// LoRA adapters in diffusers' file format (see include/ramflow/lora_diffusers.h).
#include "ramflow/lora_diffusers.h"

#include <map>
#include <set>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/safetensors.h"

namespace ramflow {
namespace {

const char* const kMetadataKey = "lora_adapter_metadata";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

void save_diffusers_lora(const LoraVelocityFieldImpl& model, const std::string& path,
                         const std::string& component) {
  NamedTensors tensors;
  for (const auto& layer : model.layers()) {
    tensors.emplace_back(component + "." + layer + ".lora_A.weight", model.lora_A(layer).detach());
    tensors.emplace_back(component + "." + layer + ".lora_B.weight", model.lora_B(layer).detach());
  }
  const std::string p = component + ".";
  const nlohmann::json config = {{p + "peft_type", "LORA"},
                                 {p + "r", model.options().rank()},
                                 {p + "lora_alpha", model.options().alpha()},
                                 {p + "target_modules", model.layers()},
                                 {p + "lora_dropout", 0.0},
                                 {p + "bias", "none"},
                                 {p + "fan_in_fan_out", false},
                                 {p + "init_lora_weights", true},
                                 {p + "use_rslora", false},
                                 {p + "use_dora", false}};
  save_safetensors(path, tensors, {{"format", "pt"}, {kMetadataKey, config.dump()}});
}

LoraVelocityField load_diffusers_lora(const std::string& path, VelocityFieldPtr base,
                                      const std::string& component) {
  const auto file = load_safetensors(path);
  const std::string prefix = component + ".";
  // layer -> (A, B), in file order of first appearance.
  std::vector<std::string> layers;
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> adapters;
  for (const auto& [name, tensor] : file.tensors) {
    const bool is_a = ends_with(name, ".lora_A.weight"), is_b = ends_with(name, ".lora_B.weight");
    if (name.rfind(prefix, 0) != 0 || !(is_a || is_b))
      throw InputError(path + ": tensor '" + name + "' is not a LoRA weight of the " + component +
                       " (\"" + prefix + "<module>.lora_A.weight\" / lora_B)");
    const auto layer = name.substr(prefix.size(), name.size() - prefix.size() - 14);
    if (!adapters.count(layer)) layers.push_back(layer);
    (is_a ? adapters[layer].first : adapters[layer].second) = tensor;
  }
  if (layers.empty()) throw InputError(path + ": no LoRA weights");
  const auto available = lora_target_layers(*base, {"*"});
  const std::set<std::string> have(available.begin(), available.end());
  for (const auto& layer : layers) {
    if (!have.count(layer))
      throw InputError(path + ": names the module '" + layer +
                       "', which the model lacks (a LoRA of another model?)");
    const auto& [A, B] = adapters[layer];
    if (!A.defined() || !B.defined())
      throw InputError(path + ": the module '" + layer + "' lacks its lora_" +
                       (A.defined() ? "B" : "A") + " weight");
  }
  const int64_t rank = adapters[layers.front()].first.size(0);
  for (const auto& layer : layers)
    if (adapters[layer].first.size(0) != rank)
      throw InputError(path + ": the module '" + layer + "' has rank " +
                       std::to_string(adapters[layer].first.size(0)) + ", the first has " +
                       std::to_string(rank) + " (one rank for all modules is supported)");
  // alpha from the metadata, as diffusers reads it; alpha = r without it.
  double alpha = static_cast<double>(rank);
  if (file.metadata.count(kMetadataKey)) {
    nlohmann::json meta;
    try {
      meta = nlohmann::json::parse(file.metadata.at(kMetadataKey));
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ": metadata '" + kMetadataKey + "' is not JSON: " + e.what());
    }
    if (meta.contains(prefix + "lora_alpha")) {
      if (!meta[prefix + "lora_alpha"].is_number())
        throw InputError(path + ": '" + prefix + "lora_alpha' is not a number");
      alpha = meta[prefix + "lora_alpha"].get<double>();
    }
    for (const char* pattern : {"rank_pattern", "alpha_pattern"})
      if (meta.contains(prefix + pattern) && !meta[prefix + pattern].empty() &&
          !meta[prefix + pattern].is_null())
        throw InputError(path + ": '" + prefix + pattern +
                         "' sets per-module values; one rank and alpha for all modules is "
                         "supported");
  }
  LoraVelocityField model(std::move(base), LoraOptions().rank(rank).alpha(alpha).targets(layers));
  torch::NoGradGuard no_grad;
  for (const auto& layer : layers) {
    const auto& [A, B] = adapters[layer];
    for (auto [src, dst, which] : {std::tuple{A, model->lora_A(layer), "lora_A"},
                                   std::tuple{B, model->lora_B(layer), "lora_B"}}) {
      if (src.sizes() != dst.sizes())
        throw InputError(path + ": '" + prefix + layer + "." + which + ".weight' has shape " +
                         c10::str(src.sizes()) + ", the layer needs " + c10::str(dst.sizes()));
      dst.copy_(src);
    }
  }
  return model;
}

}  // namespace ramflow
