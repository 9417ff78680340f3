// safetensors reading and writing, and ramflow model checkpoints (see include/ramflow/checkpoint.h).
#include "ramflow/checkpoint.h"

#include <cstring>
#include <optional>
#include <sstream>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {
namespace {

constexpr int kFormatVersion = 1;

const std::vector<std::pair<torch::ScalarType, const char*>>& dtype_names() {
  static const std::vector<std::pair<torch::ScalarType, const char*>> names = {
      {torch::kFloat64, "F64"}, {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"},
      {torch::kBFloat16, "BF16"}, {torch::kInt64, "I64"}, {torch::kInt32, "I32"},
      {torch::kInt16, "I16"},   {torch::kInt8, "I8"},    {torch::kUInt8, "U8"},
      {torch::kBool, "BOOL"}};
  return names;
}

const char* dtype_name(torch::ScalarType t) {
  for (const auto& kv : dtype_names())
    if (kv.first == t) return kv.second;
  throw Error(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

std::optional<torch::ScalarType> dtype_from_name(const std::string& s) {
  for (const auto& kv : dtype_names())
    if (s == kv.second) return kv.first;
  return std::nullopt;
}

nlohmann::json checkpoint_meta(const SafetensorsFile& file, const std::string& path) {
  auto it = file.metadata.find("ramflow");
  if (it == file.metadata.end()) throw InputError(path + ": not a ramflow checkpoint (no 'ramflow' metadata)");
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception&) {
    throw InputError(path + ": corrupt ramflow metadata");
  }
}

}  // namespace

const torch::Tensor& SafetensorsFile::at(const std::string& name, const std::string& path) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return kv.second;
  throw InputError((path.empty() ? std::string("checkpoint") : path) + ": no tensor '" + name + "'");
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<torch::Tensor> blobs;
  uint64_t offset = 0;
  for (const auto& kv : tensors) {
    TORCH_CHECK(kv.first != "__metadata__", "safetensors: reserved tensor name");
    auto t = kv.second.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[kv.first] = {{"dtype", dtype_name(t.scalar_type())},
                        {"shape", t.sizes().vec()},
                        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    blobs.push_back(t);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the tensor bytes start 8-byte aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));  // little endian
  out += text;
  for (const auto& t : blobs)
    out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  write_file_atomic(path, out);
}

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string bytes = read_file(path);
  auto corrupt = [&](const std::string& why) {
    return InputError(path + ": not a valid safetensors file (" + why + ")");
  };
  if (bytes.size() < 8) throw corrupt("shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n > bytes.size() - 8) throw corrupt("header length " + std::to_string(n) + " exceeds the file");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, n));
  } catch (const nlohmann::json::exception&) {
    throw corrupt("header is not JSON");
  }
  if (!header.is_object()) throw corrupt("header is not a JSON object");
  const uint64_t data_start = 8 + n, data_size = bytes.size() - data_start;
  SafetensorsFile file;
  uint64_t covered = 0;
  for (const auto& kv : header.items()) {
    if (kv.key() == "__metadata__") {
      if (!kv.value().is_object()) throw corrupt("__metadata__ is not an object");
      for (const auto& m : kv.value().items()) {
        if (!m.value().is_string()) throw corrupt("__metadata__ values must be strings");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const auto& e = kv.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw corrupt("entry '" + kv.key() + "' lacks dtype, shape or data_offsets");
    auto dtype = e["dtype"].is_string() ? dtype_from_name(e["dtype"].get<std::string>()) : std::nullopt;
    if (!dtype) throw corrupt("entry '" + kv.key() + "' has an unsupported dtype");
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) throw corrupt("entry '" + kv.key() + "' has a bad shape");
      shape.push_back(d.get<int64_t>());
      numel *= shape.back();
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw corrupt("entry '" + kv.key() + "' has bad data_offsets");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    const uint64_t expect = static_cast<uint64_t>(numel) * torch::elementSize(*dtype);
    if (end < begin || end > data_size || end - begin != expect)
      throw corrupt("entry '" + kv.key() + "' has offsets outside the file or a size that does not match its shape");
    covered += end - begin;
    auto t = torch::empty(shape, torch::TensorOptions().dtype(*dtype));
    if (expect > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, expect);
    file.tensors.emplace_back(kv.key(), t);
  }
  if (covered != data_size) throw corrupt("tensor bytes do not cover the data section exactly");
  return file;
}

NamedTensors model_tensors(const std::string& prefix, const VelocityFieldImpl& model) {
  NamedTensors out;
  for (const auto& p : model.named_parameters()) out.emplace_back(prefix + "." + p.key(), p.value());
  for (const auto& b : model.named_buffers()) out.emplace_back(prefix + "." + b.key(), b.value());
  return out;
}

void load_model_tensors(const NamedTensors& tensors, const std::string& prefix, VelocityFieldImpl& model,
                        const std::string& source) {
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
      why << source << ": tensor '" << name << "' is " << t.scalar_type() << " " << t.sizes() << ", the model's is "
          << into.scalar_type() << " " << into.sizes();
      throw InputError(why.str());
    }
    into.copy_(t);
  };
  for (auto& p : model.named_parameters()) fill(p.key(), p.value());
  for (auto& b : model.named_buffers()) fill(b.key(), b.value());
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
  NamedTensors tensors;
  nlohmann::json info = meta.is_object() ? meta : nlohmann::json::object();
  info["format"] = kFormatVersion;
  info["models"] = nlohmann::json::object();
  for (const auto& m : models) {
    info["models"][m.first] = m.second->spec();
    for (auto& t : model_tensors(m.first, *m.second)) tensors.push_back(std::move(t));
  }
  tensors.insert(tensors.end(), extra.begin(), extra.end());
  save_safetensors(path, tensors, {{"ramflow", info.dump()}});
}

std::string checkpoint_models_text(const nlohmann::json& meta) {
  std::string names;
  if (meta.contains("models") && meta["models"].is_object())
    for (const auto& [name, spec] : meta["models"].items()) names += (names.empty() ? "" : ", ") + name;
  return names.empty() ? " (it has no models)" : " (it has: " + names + ")";
}

nlohmann::json read_checkpoint_meta(const std::string& path) {
  return checkpoint_meta(load_safetensors(path), path);
}

VelocityFieldPtr load_checkpoint_model(const std::string& path, const std::string& name,
                                       nlohmann::json* meta_out) {
  auto file = load_safetensors(path);
  nlohmann::json meta = checkpoint_meta(file, path);
  if (!meta.contains("models") || !meta["models"].contains(name))
    throw InputError(path + ": checkpoint has no model '" + name + "'" + checkpoint_models_text(meta));
  VelocityFieldPtr model;
  try {
    model = make_velocity_field(meta["models"][name]);
  } catch (const ConfigError& e) {
    throw InputError(path + ": bad model spec (" + e.what() + ")");
  }
  load_model_tensors(file.tensors, name, *model, path);
  if (meta_out) *meta_out = meta;
  return model;
}

}  // namespace ramflow
