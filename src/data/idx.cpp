// IDX arrays, plain or gzip-compressed (see include/ramflow/idx.h).
#include "ramflow/idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {

namespace {

struct IdxType {
  uint8_t code;
  torch::ScalarType dtype;
  int64_t size;  // bytes per element
};
constexpr std::array<IdxType, 6> kTypes = {{{0x08, torch::kByte, 1},
                                            {0x09, torch::kChar, 1},
                                            {0x0B, torch::kShort, 2},
                                            {0x0C, torch::kInt, 4},
                                            {0x0D, torch::kFloat, 4},
                                            {0x0E, torch::kDouble, 8}}};

const IdxType* type_of_code(uint8_t code) {
  for (const auto& t : kTypes)
    if (t.code == code) return &t;
  return nullptr;
}

const IdxType* type_of_dtype(torch::ScalarType dtype) {
  for (const auto& t : kTypes)
    if (t.dtype == dtype) return &t;
  return nullptr;
}

// Reverses the byte order of each element in place (IDX is big-endian; this host is little-endian).
void swap_bytes(uint8_t* data, int64_t n, int64_t size) {
  if (size == 1) return;
  for (int64_t i = 0; i < n; ++i) std::reverse(data + i * size, data + (i + 1) * size);
}

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

struct GzClose {
  void operator()(gzFile f) const { gzclose(f); }
};

}  // namespace

torch::Tensor read_idx(const std::string& path, int64_t rank) {
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) throw InputError(path + ": cannot open file (" + ec.message() + ")");

  // gzip files carry their uncompressed length (mod 2^32) in the last four bytes, little-endian.
  bool gzip = false;
  uint32_t gzip_length = 0;
  {
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw InputError(path + ": cannot open file");
    unsigned char magic[2] = {0, 0};
    gzip = std::fread(magic, 1, 2, f.get()) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (gzip) {
      unsigned char tail[4];
      if (file_size < 18 || std::fseek(f.get(), -4, SEEK_END) != 0 ||
          std::fread(tail, 1, 4, f.get()) != 4)
        throw InputError(path + ": truncated gzip file (" + std::to_string(file_size) + " bytes)");
      gzip_length =
          tail[0] | (tail[1] << 8) | (tail[2] << 16) | (static_cast<uint32_t>(tail[3]) << 24);
    }
  }

  std::unique_ptr<gzFile_s, GzClose> in(gzopen(path.c_str(), "rb"));
  if (!in) throw InputError(path + ": cannot open file");
  auto read_exact = [&](void* to, uint64_t n, const std::string& what) {
    auto* p = static_cast<uint8_t*>(to);
    while (n > 0) {
      const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(n, 1u << 30));
      const int got = gzread(in.get(), p, chunk);
      if (got <= 0) throw InputError(path + ": truncated: the file ends inside the " + what);
      p += got;
      n -= static_cast<uint64_t>(got);
    }
  };

  uint8_t header[4];
  read_exact(header, 4, "header");
  if (header[0] != 0 || header[1] != 0)
    throw InputError(path + ": not an IDX file (its first two bytes are not zero)");
  const IdxType* type = type_of_code(header[2]);
  if (!type)
    throw InputError(path + ": unknown IDX element type 0x" + [&] {
      char hex[3];
      std::snprintf(hex, sizeof hex, "%02x", header[2]);
      return std::string(hex);
    }());
  const int64_t r = header[3];
  if (r < 1 || r > 4)
    throw InputError(path + ": IDX rank " + std::to_string(r) + " (expected 1 to 4)");
  if (rank > 0 && r != rank)
    throw InputError(path + ": IDX rank " + std::to_string(r) + ", expected " +
                     std::to_string(rank));
  std::vector<int64_t> shape(static_cast<size_t>(r));
  uint64_t count = 1;
  for (int64_t i = 0; i < r; ++i) {
    uint8_t b[4];
    read_exact(b, 4, "header");
    const uint64_t n =
        (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) | (uint64_t{b[2]} << 8) | b[3];
    if (n == 0) throw InputError(path + ": IDX size " + std::to_string(i) + " is 0");
    constexpr uint64_t kCap = uint64_t{1}
                              << 34;  // elements; checked before multiplying (no overflow)
    if (n > kCap / count)
      throw InputError(
          path + ": IDX sizes ask for more than 2^34 elements: not a dataset this reader takes");
    count *= n;
    shape[static_cast<size_t>(i)] = static_cast<int64_t>(n);
  }
  const uint64_t total =
      4 + 4 * static_cast<uint64_t>(r) + count * static_cast<uint64_t>(type->size);
  if (gzip) {
    if (gzip_length != static_cast<uint32_t>(total))
      throw InputError(path + ": the header says " + std::to_string(total) +
                       " bytes, the gzip stream holds " + std::to_string(gzip_length) +
                       " (mod 2^32): truncated or not this array");
  } else if (file_size != total) {
    throw InputError(path + ": the header says " + std::to_string(total) + " bytes, the file has " +
                     std::to_string(file_size) +
                     (file_size < total ? " (truncated)" : " (trailing data)"));
  }

  auto out = torch::empty(shape, torch::TensorOptions().dtype(type->dtype));
  auto* data = static_cast<uint8_t*>(out.data_ptr());
  read_exact(data, count * static_cast<uint64_t>(type->size), "data");
  uint8_t extra;
  if (gzread(in.get(), &extra, 1) > 0) throw InputError(path + ": trailing data after the array");
  if (kLittleEndian) swap_bytes(data, static_cast<int64_t>(count), type->size);
  return out;
}

void write_idx(const std::string& path, const torch::Tensor& array, bool gzip) {
  const IdxType* type = type_of_dtype(array.scalar_type());
  TORCH_CHECK(type != nullptr, "write_idx: unsupported dtype ", array.scalar_type());
  TORCH_CHECK(array.dim() >= 1 && array.dim() <= 4, "write_idx: rank ", array.dim(), " (1 to 4)");
  const auto a = array.contiguous().cpu();
  std::string bytes = {0, 0, static_cast<char>(type->code), static_cast<char>(a.dim())};
  for (int64_t n : a.sizes()) {
    TORCH_CHECK(n > 0 && n <= std::numeric_limits<uint32_t>::max(), "write_idx: size ", n);
    for (int shift : {24, 16, 8, 0})
      bytes.push_back(static_cast<char>((static_cast<uint64_t>(n) >> shift) & 0xff));
  }
  const auto* data = static_cast<const char*>(a.data_ptr());
  const size_t offset = bytes.size();
  bytes.append(data, static_cast<size_t>(a.numel() * type->size));
  if (kLittleEndian) swap_bytes(reinterpret_cast<uint8_t*>(&bytes[offset]), a.numel(), type->size);
  if (!gzip) {
    write_file_atomic(path, bytes);
    return;
  }
  // A gzip member (deflate with a gzip wrapper: windowBits 15 + 16).
  z_stream z{};
  TORCH_CHECK(
      deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK,
      "write_idx: deflateInit2 failed");
  std::string packed(deflateBound(&z, bytes.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(bytes.data());
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(packed.data());
  z.avail_out = static_cast<uInt>(packed.size());
  const int rc = deflate(&z, Z_FINISH);
  packed.resize(z.total_out);
  deflateEnd(&z);
  TORCH_CHECK(rc == Z_STREAM_END, "write_idx: deflate failed");
  write_file_atomic(path, packed);
}

}  // namespace ramflow
