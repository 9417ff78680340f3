#pragma once
// Reading diffusers' folders. A pipeline folder holds model_index.json (its "_class_name" and one
// [library, class] pair per component) and a folder per component. A model component folder
// (transformer/, vae/) holds config.json ({"_class_name", ...the constructor's arguments}) and its
// weights, diffusers' save_pretrained layout:
//   diffusion_pytorch_model.safetensors                       one file, or
//   diffusion_pytorch_model.safetensors.index.json            {"metadata": {...}, "weight_map":
//                                                               {tensor name: shard file name}}
//   diffusion_pytorch_model-0000k-of-0000n.safetensors        the shards it names
// Tensor names are the PyTorch module paths ("transformer_blocks.0.attn.to_q.weight"), which
// ramflow's ports keep. Every error names the file and what is wrong (InputError).
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>
#include <nlohmann/json.hpp>

namespace ramflow {

class SpecReader;

/// The JSON of `path`; InputError naming it if it is missing (`what` says what the file should be,
/// for the message), the error of config.h's read_json_file if it is not JSON.
nlohmann::json read_diffusers_json(const std::string& path, const std::string& what);

/// DIR/config.json, checked to name `class_name` as its "_class_name".
nlohmann::json read_component_config(const std::string& dir, const std::string& class_name);

/// The weight files of a component folder: the single file, or the shards its index names (each
/// checked to exist), in a fixed order.
std::vector<std::string> component_weight_files(const std::string& dir);

/// Copies the component's tensors into every parameter and buffer of `module` (each converted to
/// the dtype it has), leaving out the tensors whose names start with one of `ignored` (the encoder
/// of a VAE whose decoder alone is ported). InputError naming the file for a tensor the module
/// lacks, a parameter or buffer no file has, or a shape that differs (name, expected, found). Files
/// are read one at a time, so that the peak memory is the module plus one shard.
void load_component_weights(torch::nn::Module& module, const std::string& dir,
                            const std::vector<std::string>& ignored = {});

/// The fields the spec of a diffusers component's port holds: {"type", "config": {config.json
/// fields} (read from weights/config.json when absent), "dtype": float32 | float16 | bfloat16
/// (default float32), "weights": the component folder (optional; else random weights)}.
struct ComponentSpec {
  nlohmann::json config;
  torch::Dtype dtype = torch::kFloat32;
  std::string weights;
  std::string source;  // where the config came from, for errors
};
/// Reads those fields with `r` (whose other fields are the caller's), the config checked to be of
/// class `class_name` when read from the folder.
ComponentSpec read_component_spec(SpecReader& r, const std::string& class_name);

/// The weights of a module that starts from a component folder. load() reads them, unless it read
/// them into this module before and no parameter or buffer was written since (their version
/// counters say so): reading a multi-gigabyte file again would change nothing.
class ComponentWeights {
 public:
  ComponentWeights() = default;
  ComponentWeights(std::string dir, std::vector<std::string> ignored = {})
      : dir_(std::move(dir)), ignored_(std::move(ignored)) {}
  bool empty() const { return dir_.empty(); }
  const std::string& dir() const { return dir_; }
  void load(torch::nn::Module& module);
  /// Whether `module` holds exactly what load() read: loaded, and no tensor written since.
  bool unchanged(const torch::nn::Module& module) const;

 private:
  std::string dir_;
  std::vector<std::string> ignored_;
  std::vector<int64_t> loaded_versions_;
};

}  // namespace ramflow
