#pragma once
// safetensors files (https://huggingface.co/docs/safetensors). Layout:
//   [8 bytes: little-endian u64 N][N bytes: JSON header, space-padded to 8-byte alignment][tensor
//   bytes]
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets
// into the tensor bytes), plus "__metadata__": a string-to-string map.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace ramflow {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
/// The tensor named `name` in `tensors`, or null.
const torch::Tensor* find_tensor(const NamedTensors& tensors, const std::string& name);

struct SafetensorsFile {
  NamedTensors tensors;  // in file order, CPU
  std::map<std::string, std::string> metadata;

  /// The tensor named `name`; throws IOError naming the file if it is absent.
  const torch::Tensor& at(const std::string& name, const std::string& path = "") const;
};

/// Writes a safetensors file atomically. Tensors are copied to contiguous CPU memory.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// Reads and validates a safetensors file; throws InputError naming the path on any corruption. The
/// header is validated first (its length against the file and 100 MB, every dtype and shape, every
/// entry's offsets in bounds and matching its size, the entries tiling the data section without
/// overlap or gap); only then is memory allocated, and each tensor's bytes are read straight into
/// it (the file is never held in memory a second time).
SafetensorsFile load_safetensors(const std::string& path);
/// The __metadata__ of a safetensors file, validated as load_safetensors validates, without reading
/// any tensor.
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

}  // namespace ramflow
