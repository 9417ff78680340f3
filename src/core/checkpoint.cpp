// ramflow model checkpoints (see include/ramflow/checkpoint.h); the file format is
// safetensors.cpp's.
#include "ramflow/checkpoint.h"

#include <map>
#include <sstream>
#include <tuple>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/strings.h"

namespace ramflow {
namespace {

constexpr int kFormatVersion = 1;

nlohmann::json checkpoint_meta(const SafetensorsFile& file, const std::string& path) {
  auto it = file.metadata.find("ramflow");
  if (it == file.metadata.end())
    throw InputError(path + ": not a ramflow checkpoint (no 'ramflow' metadata)");
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception&) {
    throw InputError(path + ": corrupt ramflow metadata");
  }
}

}  // namespace

NamedTensors model_tensors(const std::string& prefix, const VelocityFieldImpl& model) {
  NamedTensors out;
  const auto files = model.tensors_from_files();
  for (const auto& p : model.named_parameters())
    if (!starts_with_any(p.key(), files)) out.emplace_back(prefix + "." + p.key(), p.value());
  for (const auto& b : model.named_buffers())
    if (!starts_with_any(b.key(), files)) out.emplace_back(prefix + "." + b.key(), b.value());
  return out;
}

void load_model_tensors(const NamedTensors& tensors, const std::string& prefix,
                        VelocityFieldImpl& model, const std::string& source) {
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& kv : tensors) by_name.emplace(kv.first, &kv.second);
  torch::NoGradGuard no_grad;
  auto fill = [&](const std::string& key, torch::Tensor& into) {
    const std::string name = prefix + "." + key;
    auto it = by_name.find(name);
    if (it == by_name.end()) throw InputError(source + ": no tensor '" + name + "'");
    const torch::Tensor& t = *it->second;
    if (t.sizes() != into.sizes() || t.scalar_type() != into.scalar_type()) {
      std::ostringstream why;
      why << source << ": tensor '" << name << "' is " << t.scalar_type() << " " << t.sizes()
          << ", the model's is " << into.scalar_type() << " " << into.sizes();
      throw InputError(why.str());
    }
    into.copy_(t);
  };
  // Tensors the model read from the files its spec names were left out of the checkpoint.
  const auto files = model.tensors_from_files();
  for (auto& p : model.named_parameters())
    if (!starts_with_any(p.key(), files)) fill(p.key(), p.value());
  for (auto& b : model.named_buffers())
    if (!starts_with_any(b.key(), files)) fill(b.key(), b.value());
}

NamedTensors tensors_under(const NamedTensors& tensors, const std::string& prefix) {
  NamedTensors out;
  const std::string head = prefix + ".";
  for (const auto& kv : tensors)
    if (kv.first.rfind(head, 0) == 0) out.emplace_back(kv.first.substr(head.size()), kv.second);
  return out;
}

void save_checkpoint(const std::string& path,
                     const std::vector<std::pair<std::string, const VelocityFieldImpl*>>& models,
                     const nlohmann::json& meta, const NamedTensors& extra) {
  NamedTensors all;
  nlohmann::json info = meta.is_object() ? meta : nlohmann::json::object();
  info["format"] = kFormatVersion;
  info["models"] = nlohmann::json::object();
  for (const auto& m : models) {
    info["models"][m.first] = m.second->spec();
    for (auto& t : model_tensors(m.first, *m.second)) all.push_back(std::move(t));
  }
  all.insert(all.end(), extra.begin(), extra.end());
  // A tensor that is the very same memory as one already written (the frozen base that a LoRA
  // policy shares with its EMA copies, a stage's frozen model) is written once; "aliases" maps each
  // other name to the written one.
  std::map<std::tuple<const void*, c10::ScalarType, std::vector<int64_t>, std::vector<int64_t>,
                      std::string>,
           std::string>
      written;
  NamedTensors tensors;
  nlohmann::json aliases = nlohmann::json::object();
  for (auto& [name, t] : all) {
    if (t.defined() && t.numel() > 0) {
      const auto key = std::make_tuple(static_cast<const void*>(t.data_ptr()), t.scalar_type(),
                                       t.sizes().vec(), t.strides().vec(), t.device().str());
      const auto [it, fresh] = written.emplace(key, name);
      if (!fresh) {
        aliases[name] = it->second;
        continue;
      }
    }
    tensors.emplace_back(name, t);
  }
  if (!aliases.empty()) info["aliases"] = aliases;
  save_safetensors(path, tensors, {{"ramflow", info.dump()}});
}

NamedTensors checkpoint_tensors(const SafetensorsFile& file, const nlohmann::json& meta,
                                const std::string& path) {
  NamedTensors out = file.tensors;
  if (!meta.contains("aliases")) return out;
  const auto& aliases = meta["aliases"];
  if (!aliases.is_object())
    throw InputError(path + ": corrupt ramflow metadata ('aliases' is not an object)");
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& kv : file.tensors) by_name.emplace(kv.first, &kv.second);
  for (const auto& [name, target] : aliases.items()) {
    const auto it = target.is_string() ? by_name.find(target.get<std::string>()) : by_name.end();
    if (it == by_name.end())
      throw InputError(path + ": corrupt ramflow metadata (alias '" + name +
                       "' names no tensor of the file)");
    out.emplace_back(name, *it->second);  // the same tensor: a loader copies it into its model
  }
  return out;
}

std::string checkpoint_models_text(const nlohmann::json& meta) {
  std::vector<std::string> names;
  if (meta.contains("models") && meta["models"].is_object())
    for (const auto& [name, spec] : meta["models"].items()) names.push_back(name);
  return names.empty() ? " (it has no models)" : " (it has: " + join(names) + ")";
}

nlohmann::json read_checkpoint_meta(const SafetensorsFile& file, const std::string& path) {
  return checkpoint_meta(file, path);
}

nlohmann::json read_checkpoint_meta(const std::string& path) {
  SafetensorsFile header_only;
  header_only.metadata = read_safetensors_metadata(path);
  return checkpoint_meta(header_only, path);
}

VelocityFieldPtr load_checkpoint_model(const std::string& path, const std::string& name,
                                       nlohmann::json* meta_out) {
  return load_checkpoint_model(load_safetensors(path), path, name, meta_out);
}

VelocityFieldPtr load_checkpoint_model(const SafetensorsFile& file, const std::string& path,
                                       const std::string& name, nlohmann::json* meta_out) {
  nlohmann::json meta = checkpoint_meta(file, path);
  if (!meta.contains("models") || !meta["models"].contains(name))
    throw InputError(path + ": checkpoint has no model '" + name + "'" +
                     checkpoint_models_text(meta));
  VelocityFieldPtr model;
  try {
    model = make_velocity_field(meta["models"][name]);
  } catch (const ConfigError& e) {
    throw InputError(path + ": bad model spec (" + e.what() + ")");
  }
  load_model_tensors(checkpoint_tensors(file, meta, path), name, *model, path);
  if (meta_out) *meta_out = meta;
  return model;
}

void save_module_file(const std::string& path, const torch::nn::Module& module,
                      const std::string& kind, const nlohmann::json& options,
                      const nlohmann::json& meta) {
  NamedTensors tensors;
  for (const auto& p : module.named_parameters()) tensors.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers()) tensors.emplace_back(b.key(), b.value());
  nlohmann::json info = meta.is_object() ? meta : nlohmann::json::object();
  info["format"] = kFormatVersion;
  info[kind] = options;
  save_safetensors(path, tensors, {{"ramflow", info.dump()}});
}

ModuleFile read_module_file(const std::string& path, const std::string& kind,
                            const std::string& what) {
  ModuleFile out;
  out.file = load_safetensors(path);
  if (out.file.metadata.count("ramflow")) out.info = checkpoint_meta(out.file, path);
  if (!out.info.is_object() || !out.info.contains(kind))
    throw InputError(path + ": not a ramflow " + what + " (no '" + kind + "' in its metadata)");
  return out;
}

void load_module_tensors(const ModuleFile& file, torch::nn::Module& module,
                         const std::string& path) {
  torch::NoGradGuard no_grad;
  auto assign = [&](const std::string& name, torch::Tensor& into) {
    const torch::Tensor* t = find_tensor(file.file.tensors, name);
    if (!t) throw InputError(path + ": no tensor '" + name + "'");
    if (t->sizes() != into.sizes()) {
      std::ostringstream why;
      why << path << ": tensor '" << name << "' is " << t->sizes() << ", the model's is "
          << into.sizes();
      throw InputError(why.str());
    }
    into.copy_(*t);
  };
  for (auto& p : module.named_parameters()) assign(p.key(), p.value());
  for (auto& b : module.named_buffers()) assign(b.key(), b.value());
}

}  // namespace ramflow
