#pragma once
// LoRA: low-rank adapters on the Conv2d and Linear layers of a velocity field (Hu et al. 2021,
// "LoRA: Low-Rank Adaptation of Large Language Models"; the layouts are PEFT's). Each adapted layer
// computes
//   y = W0 x + b + (alpha / r) B (A x),   A: [r, in, kh, kw] (Linear: [r, in]),  B: [out, r, 1, 1]
//   (Linear: [out, r])
// a branch beside the frozen layer, as PEFT does (lora_branch.h): the model calls its layers
// through layer_forward, which adds the branch of the adapters in force on the calling thread. W0
// is never written; only A and B train. A and B are float32 whatever the base's dtype (their
// gradients and AdamW's moments too), on the base's device. A starts uniform in +-1/sqrt(in kh kw)
// (PEFT's kaiming_uniform with a = sqrt(5)), B at zero, so a fresh adapter leaves the base's
// outputs exactly unchanged. merged() folds W = W0 + (alpha / r) B A (B A read as [out, r] x [r, in
// kh kw], reshaped to W0's shape).
//
// The reference policy v_ref is the base itself (base()): the same network with adapters off, no
// second copy of its weights. Copies for the EMA "old" policy (clone_trainable) share the base and
// copy only the adapters, so the trainer's optimiser and EMAs cover adapter weights alone.
//
// Parameter names: "base.<module>.weight" for the base and "lora.<module>.lora_A.weight" /
// "lora.<module>.lora_B.weight" for the adapters, <module> being the adapted layer's PyTorch name
// (e.g. "down.0.conv1"). save_peft_adapter writes PEFT's layout: adapter_config.json and
// adapter_model.safetensors with "base_model.model.<module>.lora_A.weight".
#include <string>
#include <vector>

#include "ramflow/lora_branch.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

struct LoraOptions {
  TORCH_ARG(int64_t, rank) = 4;    // r
  TORCH_ARG(double, alpha) = 4.0;  // scale alpha / r
  /// Which layers: a layer matches a pattern if the pattern ('*' matches any run of characters,
  /// dots included) matches its whole name, or the end of its name after a dot (as PEFT's
  /// target_modules: "conv1" matches "down.0.conv1"). Only Conv2d and Linear layers are adapted.
  TORCH_ARG(std::vector<std::string>, targets) = std::vector<std::string>{"conv1", "conv2", "qkv",
                                                                          "proj", "emb_proj"};

 public:
  nlohmann::json to_json() const;  // {"rank", "alpha", "targets"}
  /// Reads the fields above from a model spec (other fields are the caller's); ConfigError if
  /// invalid.
  static LoraOptions from_json(const nlohmann::json& spec);
  /// ConfigError naming the culprit unless rank >= 1, alpha > 0 and targets is non-empty.
  void check() const;
};

/// Names of the Conv2d and Linear layers of `model` that `targets` select, in module order. Throws
/// ConfigError naming the patterns and the available layers when a pattern matches none.
std::vector<std::string> lora_target_layers(const torch::nn::Module& model,
                                            const std::vector<std::string>& targets);

class LoraVelocityFieldImpl : public VelocityFieldImpl {
 private:
  struct Adapter {
    std::string layer;
    std::shared_ptr<torch::nn::Module> module;  // the base's Conv2d or Linear
    torch::Tensor A, B;
  };

 public:
  /// Wraps `base` (its parameters are frozen: requires_grad false). Adapters start as documented
  /// above, drawn from Rng(0); reset_parameters redraws them.
  LoraVelocityFieldImpl(VelocityFieldPtr base, LoraOptions options);

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const Condition& cond = {}) override;
  /// {"type": "lora", "base": <base spec>, "rank", "alpha", "targets"}.
  nlohmann::json spec() const override;
  /// Redraws the base from `rng`, then the adapters.
  void reset_parameters(Rng& rng) override;
  /// Redraws the adapters alone: A uniform in +-1/sqrt(in kh kw), B = 0 (the base's outputs
  /// exactly).
  void reset_adapters(Rng& rng);
  /// A wrapper around the same base object with copies of the adapters.
  VelocityFieldPtr clone_trainable() const override;
  /// The base's, under "base.".
  std::vector<std::string> tensors_from_files() const override;

  /// The base network: the model with adapters off.
  VelocityFieldImpl& base() { return *base_; }
  const VelocityFieldPtr& base_ptr() const { return base_; }
  const LoraOptions& options() const { return options_; }
  double scale() const { return options_.alpha() / static_cast<double>(options_.rank()); }
  /// The adapted layers' names, in module order.
  std::vector<std::string> layers() const;
  /// A_i [r, in, ...] and B_i [out, r, ...] of the adapted layer `layer`.
  torch::Tensor& lora_A(const std::string& layer) { return adapter(layer).A; }
  torch::Tensor& lora_B(const std::string& layer) { return adapter(layer).B; }
  const torch::Tensor& lora_A(const std::string& layer) const { return adapter(layer).A; }
  const torch::Tensor& lora_B(const std::string& layer) const { return adapter(layer).B; }
  /// With false, forward is the base's (the adapters are kept).
  void set_enabled(bool enabled) { enabled_ = enabled; }
  bool enabled() const { return enabled_; }
  /// A deep copy of the base architecture with W0 + (alpha / r) B A folded into every adapted
  /// layer.
  VelocityFieldPtr merged() const;

 private:
  /// The adapter of `layer` (ConfigError if there is none).
  Adapter& adapter(const std::string& layer);
  const Adapter& adapter(const std::string& layer) const;
  /// W0 + (alpha / r) B A for adapter `a`.
  torch::Tensor adapted_weight(const Adapter& a) const;
  VelocityFieldPtr base_;
  LoraOptions options_;
  std::vector<Adapter> adapters_;
  LoraBranches branches_;       // the adapters by layer, installed for each forward call
  bool reach_checked_ = false;  // the first forward checked that every adapted layer is reached
  bool enabled_ = true;
};
TORCH_MODULE(LoraVelocityField);

/// The LoRA wrapper inside `model`, or null when it has none.
LoraVelocityFieldImpl* as_lora(VelocityFieldImpl& model);

/// Writes PEFT's adapter layout into directory `dir` (created if missing): adapter_config.json
/// {"peft_type": "LORA", "r", "lora_alpha", "target_modules": [adapted layers], ...} and
/// adapter_model.safetensors ("base_model.model.<layer>.lora_A.weight", "...lora_B.weight"), each
/// written atomically. `base_model` is recorded as base_model_name_or_path.
void save_peft_adapter(const LoraVelocityFieldImpl& model, const std::string& dir,
                       const std::string& base_model = "");
/// Attaches the adapters of a PEFT directory written as above to `base`: every tensor must name an
/// adapted layer with the right shape (IOError naming the file otherwise).
LoraVelocityField load_peft_adapter(const std::string& dir, VelocityFieldPtr base);

}  // namespace ramflow
