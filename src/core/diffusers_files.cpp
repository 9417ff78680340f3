// Reading diffusers' component folders (see include/ramflow/diffusers_files.h).
#include "ramflow/diffusers_files.h"

#include <filesystem>
#include <map>
#include <set>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/safetensors.h"
#include "ramflow/strings.h"

namespace ramflow {
namespace {

namespace fs = std::filesystem;

const char* const kWeights = "diffusion_pytorch_model.safetensors";
const char* const kIndex = "diffusion_pytorch_model.safetensors.index.json";

/// The version counter of every parameter and buffer (each in-place write advances one).
std::vector<int64_t> tensor_versions(const torch::nn::Module& module) {
  std::vector<int64_t> v;
  for (const auto& p : module.parameters()) v.push_back(static_cast<int64_t>(p._version()));
  for (const auto& b : module.buffers()) v.push_back(static_cast<int64_t>(b._version()));
  return v;
}

}  // namespace

nlohmann::json read_diffusers_json(const std::string& path, const std::string& what) {
  if (!fs::is_regular_file(path)) throw InputError(path + ": missing (" + what + ")");
  return read_json_file(path);  // config.h's: an error names the file and the parse failure
}

nlohmann::json read_component_config(const std::string& dir, const std::string& class_name) {
  const std::string path = (fs::path(dir) / "config.json").string();
  auto config = read_diffusers_json(path, "a diffusers " + class_name + " config");
  if (!config.is_object()) throw InputError(path + ": not a JSON object");
  if (!config.contains("_class_name") || !config["_class_name"].is_string())
    throw InputError(path + ": no \"_class_name\" (a diffusers config names its class)");
  const auto found = config["_class_name"].get<std::string>();
  if (found != class_name)
    throw InputError(path + ": \"_class_name\" is '" + found + "', expected '" + class_name + "'");
  return config;
}

std::vector<std::string> component_weight_files(const std::string& dir) {
  const fs::path single = fs::path(dir) / kWeights, index = fs::path(dir) / kIndex;
  if (fs::is_regular_file(single)) return {single.string()};
  if (!fs::is_regular_file(index))
    throw InputError(dir + ": no weights (neither " + kWeights + " nor " + kIndex + ")");
  const auto json = read_diffusers_json(index.string(), "a sharded weights index");
  if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object() ||
      json["weight_map"].empty())
    throw InputError(index.string() + ": no \"weight_map\" object naming the shards");
  std::set<std::string> shards;
  for (const auto& kv : json["weight_map"].items()) {
    if (!kv.value().is_string())
      throw InputError(index.string() + ": the shard of '" + kv.key() + "' is not a file name");
    const auto name = kv.value().get<std::string>();
    // A shard is a file beside the index: no directories, no way out of the folder.
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw InputError(index.string() + ": shard name '" + name + "' is not a file name");
    shards.insert(name);
  }
  std::vector<std::string> files;
  for (const auto& name : shards) {
    const auto path = (fs::path(dir) / name).string();
    if (!fs::is_regular_file(path))
      throw InputError(index.string() + ": names the shard " + name + ", which is missing");
    files.push_back(path);
  }
  return files;
}

void load_component_weights(torch::nn::Module& module, const std::string& dir,
                            const std::vector<std::string>& ignored) {
  const auto files = component_weight_files(dir);
  std::map<std::string, torch::Tensor> targets;
  for (auto& kv : module.named_parameters(/*recurse=*/true)) targets[kv.key()] = kv.value();
  for (auto& kv : module.named_buffers(/*recurse=*/true)) targets[kv.key()] = kv.value();
  std::set<std::string> loaded;
  torch::NoGradGuard no_grad;
  for (const auto& path : files) {
    auto file = load_safetensors(path);
    for (auto& [name, tensor] : file.tensors) {
      if (starts_with_any(name, ignored)) continue;
      const auto it = targets.find(name);
      if (it == targets.end())
        throw InputError(path + ": tensor '" + name + "' is not in the model (another model?)");
      if (it->second.sizes() != tensor.sizes())
        throw InputError(path + ": tensor '" + name + "' has shape " +
                         shape_text(tensor.sizes().vec()) + ", the config gives " +
                         shape_text(it->second.sizes().vec()));
      if (!loaded.insert(name).second)
        throw InputError(path + ": tensor '" + name + "' is in two shards");
      it->second.copy_(tensor);  // converted to the model's dtype and device
      tensor = torch::Tensor();  // free the file's copy as soon as it is used
    }
  }
  for (const auto& kv : targets)
    if (!loaded.count(kv.first)) throw InputError(dir + ": the weights lack '" + kv.first + "'");
}

ComponentSpec read_component_spec(SpecReader& r, const std::string& class_name) {
  ComponentSpec s;
  r.text("type");
  s.weights = r.text("weights", "");
  s.dtype = parse_dtype(r.text("dtype", "float32"), r.what() + ": field 'dtype'");
  if (r.has("config")) {
    s.config = r.value("config");
    s.source = r.what() + ": config";
  } else if (!s.weights.empty()) {
    s.config = read_component_config(s.weights, class_name);
    s.source = s.weights + "/config.json";
  } else {
    throw ConfigError(r.what() + ": needs 'config' (" + class_name +
                      "'s config.json fields) or 'weights' (its diffusers folder)");
  }
  return s;
}

bool ComponentWeights::unchanged(const torch::nn::Module& module) const {
  return !loaded_versions_.empty() && loaded_versions_ == tensor_versions(module);
}

void ComponentWeights::load(torch::nn::Module& module) {
  if (unchanged(module)) return;
  load_component_weights(module, dir_, ignored_);
  loaded_versions_ = tensor_versions(module);
}

}  // namespace ramflow
