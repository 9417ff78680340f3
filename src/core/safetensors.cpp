// safetensors files: reading with validation before allocation, atomic writing (see
// include/ramflow/safetensors.h).
#include "ramflow/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {
namespace {

const std::vector<std::pair<torch::ScalarType, const char*>>& dtype_names() {
  static const std::vector<std::pair<torch::ScalarType, const char*>> names = {
      {torch::kFloat64, "F64"},   {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"},
      {torch::kBFloat16, "BF16"}, {torch::kInt64, "I64"},   {torch::kInt32, "I32"},
      {torch::kInt16, "I16"},     {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
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

}  // namespace

const torch::Tensor* find_tensor(const NamedTensors& tensors, const std::string& name) {
  for (const auto& kv : tensors)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

const torch::Tensor& SafetensorsFile::at(const std::string& name, const std::string& path) const {
  if (const torch::Tensor* t = find_tensor(tensors, name)) return *t;
  throw InputError((path.empty() ? std::string("checkpoint") : path) + ": no tensor '" + name +
                   "'");
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
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
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));  // little endian
  out += text;
  for (const auto& t : blobs)
    out.append(static_cast<const char*>(t.data_ptr()),
               static_cast<size_t>(t.numel()) * t.element_size());
  write_file_atomic(path, out);
}

namespace {

// One tensor's entry in a validated header: where its bytes are, relative to the data section.
struct Entry {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// A file opened for reading, closed on scope exit.
struct File {
  explicit File(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~File() {
    if (fd >= 0) ::close(fd);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  int fd;
};

// Reads exactly `size` bytes at `offset` into `into`; false on a short read.
bool read_at(int fd, void* into, uint64_t size, uint64_t offset) {
  auto* p = static_cast<char*>(into);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

constexpr uint64_t kMaxHeader = 100u << 20;  // 100 MB, as the reference implementation allows

// The parsed and validated header of a safetensors file of `file_size` bytes whose first 8 + n
// bytes are `head`: every entry's dtype, shape and offsets checked (in bounds, sizes matching,
// together covering the data section exactly, without overlap), nothing allocated for tensor data
// yet. `metadata` receives
// __metadata__.
std::vector<Entry> parse_header(const std::string& header_text, uint64_t data_size,
                                const std::string& path,
                                std::map<std::string, std::string>& metadata) {
  auto corrupt = [&](const std::string& why) {
    return InputError(path + ": not a valid safetensors file (" + why + ")");
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text);
  } catch (const nlohmann::json::exception&) {
    throw corrupt("header is not JSON");
  }
  if (!header.is_object()) throw corrupt("header is not a JSON object");
  std::vector<Entry> entries;
  for (const auto& kv : header.items()) {
    if (kv.key() == "__metadata__") {
      if (!kv.value().is_object()) throw corrupt("__metadata__ is not an object");
      for (const auto& m : kv.value().items()) {
        if (!m.value().is_string()) throw corrupt("__metadata__ values must be strings");
        metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const auto& e = kv.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets"))
      throw corrupt("entry '" + kv.key() + "' lacks dtype, shape or data_offsets");
    Entry entry;
    entry.name = kv.key();
    auto dtype =
        e["dtype"].is_string() ? dtype_from_name(e["dtype"].get<std::string>()) : std::nullopt;
    if (!dtype) throw corrupt("entry '" + kv.key() + "' has an unsupported dtype");
    entry.dtype = *dtype;
    if (!e["shape"].is_array() || e["shape"].size() > 16)
      throw corrupt("entry '" + kv.key() + "' has a bad shape");
    uint64_t bytes = torch::elementSize(entry.dtype);
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) throw corrupt("entry '" + kv.key() + "' has a bad shape");
      const uint64_t n = d.get<uint64_t>();
      if (n > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(bytes, n, &bytes))
        throw corrupt("entry '" + kv.key() + "' has a shape too large for any file");
      entry.shape.push_back(static_cast<int64_t>(n));
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw corrupt("entry '" + kv.key() + "' has bad data_offsets");
    entry.begin = off[0].get<uint64_t>();
    entry.end = off[1].get<uint64_t>();
    if (entry.end < entry.begin || entry.end > data_size)
      throw corrupt("entry '" + kv.key() + "' has offsets [" + std::to_string(entry.begin) + ", " +
                    std::to_string(entry.end) + ") outside the data section of " +
                    std::to_string(data_size) + " bytes");
    if (entry.end - entry.begin != bytes)
      throw corrupt("entry '" + kv.key() + "' has " + std::to_string(entry.end - entry.begin) +
                    " bytes, its dtype and shape need " + std::to_string(bytes));
    entries.push_back(std::move(entry));
  }
  // Sorted by offset, the entries must tile the data section: no overlap, no gap.
  std::vector<const Entry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t at = 0;
  for (const Entry* e : order) {
    if (e->begin < at) throw corrupt("entry '" + e->name + "' overlaps another");
    if (e->begin > at)
      throw corrupt("bytes [" + std::to_string(at) + ", " + std::to_string(e->begin) +
                    ") belong to no tensor");
    at = e->end;
  }
  if (at != data_size) throw corrupt("tensor bytes do not cover the data section exactly");
  return entries;
}

// The header of `path`: (8 + n, its text), after checking n against the file's size.
std::pair<uint64_t, std::string> read_header(const File& f, const std::string& path,
                                             uint64_t& file_size) {
  auto corrupt = [&](const std::string& why) {
    return InputError(path + ": not a valid safetensors file (" + why + ")");
  };
  struct stat st {};
  if (f.fd < 0 || ::fstat(f.fd, &st) != 0) throw InputError(path + ": cannot open file");
  if (S_ISDIR(st.st_mode)) {
    // A run directory given where its checkpoint is meant.
    const std::string final_checkpoint = path + "/checkpoints/final.safetensors";
    struct stat fin {};
    throw InputError(path + ": a folder, not a safetensors file" +
                     (::stat(final_checkpoint.c_str(), &fin) == 0
                          ? " (its run's final checkpoint is " + final_checkpoint + ")"
                          : std::string()));
  }
  if (!S_ISREG(st.st_mode)) throw InputError(path + ": not a regular file");
  file_size = static_cast<uint64_t>(st.st_size);
  unsigned char len[8];
  if (file_size < 8 || !read_at(f.fd, len, 8, 0))
    throw corrupt("shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (n > file_size - 8) {
    // A text file (JSON, CSV, ...) read as safetensors: its first 8 characters make a huge length.
    const bool text = std::all_of(len, len + 8, [](unsigned char c) {
      return c == '\n' || c == '\r' || c == '\t' || (c >= 0x20 && c < 0x7f);
    });
    if (text) {
      std::string start(reinterpret_cast<const char*>(len), 8);
      std::replace_if(
          start.begin(), start.end(), [](char c) { return c < 0x20; }, ' ');
      throw InputError(path + ": not a safetensors file (it begins with text: '" + start +
                       "...'; a JSON, CSV or other text file?)");
    }
    throw corrupt("header length " + std::to_string(n) + " exceeds the file");
  }
  if (n > kMaxHeader) throw corrupt("header length " + std::to_string(n) + " exceeds 100 MB");
  std::string text(n, '\0');
  if (n > 0 && !read_at(f.fd, text.data(), n, 8)) throw InputError(path + ": read failed");
  return {8 + n, std::move(text)};
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  File f(path);
  uint64_t file_size = 0;
  const auto [data_start, text] = read_header(f, path, file_size);
  SafetensorsFile file;
  const auto entries = parse_header(text, file_size - data_start, path, file.metadata);
  // Only now, with every entry checked, memory for the tensors: each read straight into its own.
  for (const auto& e : entries) {
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype));
    if (e.end > e.begin && !read_at(f.fd, t.data_ptr(), e.end - e.begin, data_start + e.begin))
      throw InputError(path + ": read failed (the file changed while being read?)");
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  File f(path);
  uint64_t file_size = 0;
  const auto [data_start, text] = read_header(f, path, file_size);
  std::map<std::string, std::string> metadata;
  parse_header(text, file_size - data_start, path, metadata);
  return metadata;
}

}  // namespace ramflow
