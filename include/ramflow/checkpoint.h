#pragma once
// Checkpoints are safetensors files (safetensors.h): safe to load from untrusted sources, readable
// from Python with `safetensors.torch.load_file`. ramflow stores its metadata as JSON text under
// the key "ramflow": {"format": 1, "models": {name: spec}, ["aliases": {name: written name}],
// ...caller fields (config, step, method)}. Model tensors are named "<model>.<parameter path>",
// e.g. "policy.layer0_weight_t".
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/safetensors.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

/// Every parameter and buffer of `model`, named "<prefix>.<path>", but those it read from the files
/// its spec names (VelocityFieldImpl::tensors_from_files: a diffusers base, unchanged).
NamedTensors model_tensors(const std::string& prefix, const VelocityFieldImpl& model);
/// Copies the tensors "<prefix>.<path>" of `tensors` into every parameter and buffer of `model` (no
/// grad) but those it read from the files its spec names; throws InputError naming `source` for a
/// missing tensor or one of the wrong shape or dtype.
void load_model_tensors(const NamedTensors& tensors, const std::string& prefix,
                        VelocityFieldImpl& model, const std::string& source);
/// The tensors named "<prefix>.<rest>", renamed "<rest>".
NamedTensors tensors_under(const NamedTensors& tensors, const std::string& prefix);

/// Saves named velocity fields with ramflow metadata (`meta` fields are added to it), and `extra`
/// tensors beside them (a training checkpoint's optimiser state). A tensor that is the same memory
/// as one written before it (same data pointer, dtype, shape and strides: the frozen base a LoRA
/// policy shares with its EMA copies) is written once, and the metadata's "aliases" maps its name
/// to the written one; checkpoint_tensors restores it.
void save_checkpoint(const std::string& path,
                     const std::vector<std::pair<std::string, const VelocityFieldImpl*>>& models,
                     const nlohmann::json& meta = nlohmann::json::object(),
                     const NamedTensors& extra = {});

/// The tensors of a checkpoint with every alias of its metadata restored (the aliased tensor
/// itself, not a copy); throws InputError naming `path` for an alias that names no tensor of the
/// file.
NamedTensors checkpoint_tensors(const SafetensorsFile& file, const nlohmann::json& meta,
                                const std::string& path);

/// " (it has: a, b)" naming the models in checkpoint metadata, or " (it has no models)": for
/// errors.
std::string checkpoint_models_text(const nlohmann::json& meta);

/// The ramflow metadata of a checkpoint, from its header alone (throws InputError if the file is
/// not a ramflow checkpoint).
nlohmann::json read_checkpoint_meta(const std::string& path);
/// The same of a file already read.
nlohmann::json read_checkpoint_meta(const SafetensorsFile& file, const std::string& path);

/// Rebuilds the model `name` from a checkpoint (architecture from the metadata, weights from the
/// tensors). `meta`, if given, receives the ramflow metadata.
VelocityFieldPtr load_checkpoint_model(const std::string& path, const std::string& name,
                                       nlohmann::json* meta = nullptr);
/// The same from a file already read (`path` names it in errors): a job that needs several things
/// of one checkpoint reads it once.
VelocityFieldPtr load_checkpoint_model(const SafetensorsFile& file, const std::string& path,
                                       const std::string& name, nlohmann::json* meta = nullptr);

/// A file of one torch module that is not a velocity field (an image classifier, the words task's
/// text reader): its parameters and buffers under their own paths, and metadata "ramflow" =
/// `meta` + {"format": 1, kind: options}, where `options` rebuilds the module.
void save_module_file(const std::string& path, const torch::nn::Module& module,
                      const std::string& kind, const nlohmann::json& options,
                      const nlohmann::json& meta = nlohmann::json::object());

/// A module file read back: its metadata (with `kind`) and its tensors.
struct ModuleFile {
  nlohmann::json info;
  SafetensorsFile file;
};
/// Reads a module file; throws InputError naming `path` when it is not one of `kind` ("not a
/// ramflow <what> (no '<kind>' in its metadata)") or its metadata is corrupt.
ModuleFile read_module_file(const std::string& path, const std::string& kind,
                            const std::string& what);
/// Copies the file's tensors into every parameter and buffer of `module` (no grad); throws
/// InputError naming `path` for a missing tensor or one of another shape.
void load_module_tensors(const ModuleFile& file, torch::nn::Module& module,
                         const std::string& path);

}  // namespace ramflow
