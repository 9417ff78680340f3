// LoRA adapters on Conv2d and Linear layers (see include/ramflow/lora.h).
#include "ramflow/lora.h"

#include <cmath>
#include <filesystem>
#include <set>

#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/lora_branch.h"
#include "ramflow/strings.h"

namespace ramflow {
namespace {

// '*' matches any run of characters (dots included); everything else matches itself.
bool glob(const std::string& pattern, const std::string& name, size_t p = 0, size_t n = 0) {
  for (; p < pattern.size(); ++p, ++n) {
    if (pattern[p] == '*') {
      for (size_t k = n; k <= name.size(); ++k)
        if (glob(pattern, name, p + 1, k)) return true;
      return false;
    }
    if (n >= name.size() || pattern[p] != name[n]) return false;
  }
  return n == name.size();
}

// PEFT's rule: the whole name, or its end after a dot.
bool layer_matches(const std::string& pattern, const std::string& layer) {
  return glob(pattern, layer) || glob("*." + pattern, layer);
}

bool adaptable(const torch::nn::Module& m) {
  return dynamic_cast<const torch::nn::Conv2dImpl*>(&m) ||
         dynamic_cast<const torch::nn::LinearImpl*>(&m);
}

torch::Tensor& weight_of(torch::nn::Module& m) {
  if (auto* conv = dynamic_cast<torch::nn::Conv2dImpl*>(&m)) return conv->weight;
  return dynamic_cast<torch::nn::LinearImpl&>(m).weight;
}

// A plain module holding one parameter "weight" (the lora_A / lora_B nodes of PEFT's names).
torch::Tensor weight_node(torch::nn::Module& parent, const std::string& name,
                          const torch::Tensor& init) {
  auto node = std::make_shared<torch::nn::Module>();
  auto w = node->register_parameter("weight", init);
  parent.register_module(name, node);
  return w;
}

// The child `name` of `parent`, created empty if absent (the adapters mirror the base's module
// tree).
torch::nn::Module& child(torch::nn::Module& parent, const std::string& name) {
  for (const auto& item : parent.named_children())
    if (item.key() == name) return *item.value();
  return *parent.register_module(name, std::make_shared<torch::nn::Module>());
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '.') {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return parts;
}

const std::string kPeftPrefix = "base_model.model.";

}  // namespace

// --- options -------------------------------------------------------------------------------------
nlohmann::json LoraOptions::to_json() const {
  return {{"rank", rank_}, {"alpha", alpha_}, {"targets", targets_}};
}

void LoraOptions::check() const {
  if (rank_ < 1) throw ConfigError("--lora-rank must be >= 1, got " + std::to_string(rank_));
  if (!(alpha_ > 0) || !std::isfinite(alpha_)) throw ConfigError("--lora-alpha must be > 0");
  if (targets_.empty()) throw ConfigError("--lora-targets: give at least one layer name pattern");
  for (const auto& t : targets_)
    if (t.empty()) throw ConfigError("--lora-targets: an empty pattern");
}

LoraOptions LoraOptions::from_json(const nlohmann::json& spec) {
  LoraOptions o;
  const auto rank = spec.value("rank", nlohmann::json(4));
  if (!rank.is_number_integer()) throw ConfigError("model 'lora': field 'rank' must be an integer");
  o.rank(rank.get<int64_t>());
  const auto alpha = spec.value("alpha", nlohmann::json(static_cast<double>(o.rank())));
  if (!alpha.is_number()) throw ConfigError("model 'lora': field 'alpha' must be a number");
  o.alpha(alpha.get<double>());
  if (spec.contains("targets")) {
    if (!spec["targets"].is_array())
      throw ConfigError("model 'lora': field 'targets' must be a list of patterns");
    std::vector<std::string> targets;
    for (const auto& t : spec["targets"]) {
      if (!t.is_string())
        throw ConfigError("model 'lora': field 'targets' must be a list of strings");
      targets.push_back(t.get<std::string>());
    }
    o.targets(targets);
  }
  o.check();
  return o;
}

std::vector<std::string> lora_target_layers(const torch::nn::Module& model,
                                            const std::vector<std::string>& targets) {
  std::vector<std::string> all, chosen;
  std::set<std::string> used;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (!adaptable(*item.value())) continue;
    all.push_back(item.key());
    for (const auto& pattern : targets)
      if (layer_matches(pattern, item.key())) {
        chosen.push_back(item.key());
        used.insert(pattern);
        break;
      }
  }
  for (const auto& pattern : targets)
    if (!used.count(pattern)) {
      throw ConfigError(
          "--lora-targets: pattern '" + pattern +
          "' matches no Conv2d or Linear layer of the model" +
          (all.empty() ? std::string(" (it has none)") : " (it has: " + join(all) + ")"));
    }
  return chosen;
}

// --- the wrapper ---------------------------------------------------------------------------------
LoraVelocityFieldImpl::LoraVelocityFieldImpl(VelocityFieldPtr base, LoraOptions options)
    : base_(std::move(base)), options_(std::move(options)) {
  TORCH_CHECK(base_, "LoraVelocityField: a base model is required");
  options_.check();
  if (as_lora(*base_)) throw ConfigError("LoRA: the base model already has adapters");
  register_module("base", base_);
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  auto& root = *register_module("lora", std::make_shared<torch::nn::Module>());
  auto modules = base_->named_modules("", /*include_self=*/false);
  for (const auto& layer : lora_target_layers(*base_, options_.targets())) {
    Adapter a;
    a.layer = layer;
    a.module = modules[layer];
    if (auto* conv = dynamic_cast<torch::nn::Conv2dImpl*>(a.module.get()))
      check_lora_conv(*conv, layer);
    const torch::Tensor& w0 = weight_of(*a.module);
    const auto shape = w0.sizes();  // [out, in, kh, kw] or [out, in]
    std::vector<int64_t> a_shape(shape.begin(), shape.end()), b_shape(shape.size(), 1);
    a_shape[0] = options_.rank();  // A: [r, in, kh, kw]
    b_shape[0] = shape[0];         // B: [out, r, 1, 1]
    b_shape[1] = options_.rank();
    torch::nn::Module* node = &root;
    for (const auto& part : split_dots(layer)) node = &child(*node, part);
    // Adapters in float32 whatever the base's dtype, on its device.
    const auto opts =
        torch::TensorOptions().dtype(torch::kFloat).device(w0.device()).requires_grad(true);
    a.A = weight_node(*node, "lora_A", torch::zeros(a_shape, opts));
    a.B = weight_node(*node, "lora_B", torch::zeros(b_shape, opts));
    branches_[a.module.get()] = LoraBranch{a.A, a.B, scale(), adapters_.size()};
    adapters_.push_back(std::move(a));
  }
  Rng rng(0);
  reset_adapters(rng);
}

void LoraVelocityFieldImpl::reset_adapters(Rng& rng) {
  torch::NoGradGuard no_grad;
  for (auto& a : adapters_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(a.A[0].numel()));  // 1/sqrt(in kh kw)
    a.A.copy_((rng.rand(a.A.sizes()) * 2.0 - 1.0) * bound);
    a.B.zero_();
  }
}

torch::Tensor LoraVelocityFieldImpl::adapted_weight(const Adapter& a) const {
  const torch::Tensor& w0 = weight_of(*a.module);
  // B A: [out, r] x [r, in kh kw] -> [out, in kh kw] -> W0's shape, in float32, rounded once to
  // W0's dtype
  auto delta = torch::mm(a.B.flatten(1), a.A.flatten(1)).view(w0.sizes());
  return (w0.to(torch::kFloat) + scale() * delta).to(w0.scalar_type());
}

torch::Tensor LoraVelocityFieldImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                             const Condition& cond) {
  if (!enabled_) return base_->forward(x, t, cond);
  // The base's forward with this wrapper's branches in force on this thread (lora_branch.h). The
  // first call checks that the base reaches every adapted layer through layer_forward: a layer
  // called otherwise would silently ignore its adapter.
  std::vector<char> reached;
  if (!reach_checked_) reached.assign(adapters_.size(), 0);
  torch::Tensor v;
  {
    LoraScope scope(&branches_, reach_checked_ ? nullptr : &reached);
    v = base_->forward(x, t, cond);
  }
  if (!reach_checked_) {
    std::vector<std::string> missed;
    for (size_t i = 0; i < adapters_.size(); ++i)
      if (!reached[i]) missed.push_back(adapters_[i].layer);
    if (!missed.empty())
      throw ConfigError("LoRA: the model's forward does not call layer(s) " + join(missed) +
                        " through layer_forward, so their adapters would be ignored; choose other "
                        "--lora-targets");
    reach_checked_ = true;
  }
  return v;
}

nlohmann::json LoraVelocityFieldImpl::spec() const {
  nlohmann::json s = options_.to_json();
  s["type"] = "lora";
  s["base"] = base_->spec();
  return s;
}

void LoraVelocityFieldImpl::reset_parameters(Rng& rng) {
  base_->reset_parameters(rng);
  reset_adapters(rng);
}

std::vector<std::string> LoraVelocityFieldImpl::tensors_from_files() const {
  std::vector<std::string> out;
  for (const auto& prefix : base_->tensors_from_files()) out.push_back("base." + prefix);
  return out;
}

VelocityFieldPtr LoraVelocityFieldImpl::clone_trainable() const {
  auto copy = LoraVelocityField(base_, options_);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < adapters_.size(); ++i) {
    copy->adapters_[i].A.copy_(adapters_[i].A);
    copy->adapters_[i].B.copy_(adapters_[i].B);
    copy->adapters_[i].A.set_requires_grad(adapters_[i].A.requires_grad());
    copy->adapters_[i].B.set_requires_grad(adapters_[i].B.requires_grad());
  }
  copy->enabled_ = enabled_;
  copy->train(is_training());
  return copy.ptr();
}

std::vector<std::string> LoraVelocityFieldImpl::layers() const {
  std::vector<std::string> names;
  for (const auto& a : adapters_) names.push_back(a.layer);
  return names;
}

LoraVelocityFieldImpl::Adapter& LoraVelocityFieldImpl::adapter(const std::string& layer) {
  return const_cast<Adapter&>(static_cast<const LoraVelocityFieldImpl&>(*this).adapter(layer));
}

const LoraVelocityFieldImpl::Adapter& LoraVelocityFieldImpl::adapter(
    const std::string& layer) const {
  for (const auto& a : adapters_)
    if (a.layer == layer) return a;
  throw ConfigError("LoRA: no adapter on layer '" + layer + "'");
}

VelocityFieldPtr LoraVelocityFieldImpl::merged() const {
  auto merged = clone_velocity_field(*base_);
  auto modules = merged->named_modules("", /*include_self=*/false);
  torch::NoGradGuard no_grad;
  for (const auto& a : adapters_)
    weight_of(*modules[a.layer]).copy_(adapted_weight(a));  // into the copy
  return merged;
}

LoraVelocityFieldImpl* as_lora(VelocityFieldImpl& model) {
  return dynamic_cast<LoraVelocityFieldImpl*>(&model);
}

// --- PEFT's layout -------------------------------------------------------------------------------
void save_peft_adapter(const LoraVelocityFieldImpl& model, const std::string& dir,
                       const std::string& base_model) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IOError(dir + ": cannot create the adapter directory: " + ec.message());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& layer : model.layers()) {
    tensors.emplace_back(kPeftPrefix + layer + ".lora_A.weight", model.lora_A(layer).detach());
    tensors.emplace_back(kPeftPrefix + layer + ".lora_B.weight", model.lora_B(layer).detach());
  }
  save_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
  const nlohmann::json config = {
      {"peft_type", "LORA"},
      {"r", model.options().rank()},
      {"lora_alpha", model.options().alpha()},
      {"target_modules", model.layers()},
      {"lora_dropout", 0.0},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"init_lora_weights", true},
      {"use_rslora", false},
      {"modules_to_save", nullptr},
      {"task_type", nullptr},
      {"base_model_name_or_path",
       base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(base_model)},
      {"ramflow_base_spec", model.base_ptr()->spec()}};
  write_file_atomic(dir + "/adapter_config.json", config.dump(2) + "\n");
}

LoraVelocityField load_peft_adapter(const std::string& dir, VelocityFieldPtr base) {
  const std::string config_path = dir + "/adapter_config.json",
                    weights_path = dir + "/adapter_model.safetensors";
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(read_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(config_path + ": not valid JSON: " + e.what());
  }
  if (config.value("peft_type", std::string()) != "LORA")
    throw InputError(config_path + ": peft_type is not \"LORA\"");
  if (!config.contains("r") || !config["r"].is_number_integer() || !config.contains("lora_alpha") ||
      !config["lora_alpha"].is_number() || !config.contains("target_modules") ||
      !config["target_modules"].is_array())
    throw InputError(
        config_path +
        ": needs an integer \"r\", a number \"lora_alpha\" and a list \"target_modules\"");
  std::vector<std::string> targets;
  for (const auto& t : config["target_modules"]) {
    if (!t.is_string()) throw InputError(config_path + ": target_modules must be strings");
    targets.push_back(t.get<std::string>());
  }
  LoraOptions options;
  options.rank(config["r"].get<int64_t>())
      .alpha(config["lora_alpha"].get<double>())
      .targets(targets);
  LoraVelocityField model(std::move(base), options);
  const SafetensorsFile file = load_safetensors(weights_path);
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  for (const auto& layer : model->layers())
    for (const char* which : {"lora_A", "lora_B"}) {
      const std::string name = kPeftPrefix + layer + "." + which + ".weight";
      expected.insert(name);
      const torch::Tensor& src = file.at(name, weights_path);
      torch::Tensor& dst = which[5] == 'A' ? model->lora_A(layer) : model->lora_B(layer);
      if (src.sizes() != dst.sizes())
        throw InputError(weights_path + ": '" + name + "' has shape " + c10::str(src.sizes()) +
                         ", the layer needs " + c10::str(dst.sizes()));
      dst.copy_(src);
    }
  for (const auto& [name, tensor] : file.tensors)
    if (!expected.count(name))
      throw InputError(weights_path + ": '" + name + "' is not an adapter of the model");
  return model;
}

}  // namespace ramflow
