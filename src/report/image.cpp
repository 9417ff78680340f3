// PNG files and image grids (see include/ramflow/image.h). PNG (ISO/IEC 15948): the 8-byte
// signature, then chunks [u32 length][4-byte type][data][u32 CRC-32 of type and data], big-endian:
// IHDR (width, height, bit depth 8, colour type 0 grey or 2 RGB, compression 0, filter 0, interlace
// 0), IDAT (the zlib stream of the rows, each prefixed by its filter byte; 0 = none here), IEND.
#include "ramflow/image.h"

#include <zlib.h>

#include <cstring>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {
namespace {

const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

uint32_t get_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  put_u32(out, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()),
                                           static_cast<uInt>(body.size()))));
}

}  // namespace

void write_png(const std::string& path, const torch::Tensor& pixels) {
  write_file_atomic(path, encode_png(pixels));
}

std::string encode_png(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.scalar_type() == torch::kByte &&
                  (pixels.dim() == 2 || (pixels.dim() == 3 && pixels.size(2) == 3)),
              "write_png: pixels must be uint8 [H, W] or [H, W, 3], got ", pixels.sizes(), " ",
              pixels.scalar_type());
  auto p = pixels.to(torch::kCPU).contiguous();
  const int64_t H = p.size(0), W = p.size(1), C = p.dim() == 3 ? 3 : 1;
  TORCH_CHECK(H > 0 && W > 0, "write_png: empty image");
  std::string raw;  // filter byte 0, then the row
  raw.reserve(static_cast<size_t>(H * (W * C + 1)));
  const auto* data = p.data_ptr<uint8_t>();
  for (int64_t y = 0; y < H; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(data + y * W * C), static_cast<size_t>(W * C));
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string z(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                6) != Z_OK)
    throw IOError("PNG compression failed");
  z.resize(size);
  std::string out(reinterpret_cast<const char*>(kSignature), 8);
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(W));
  put_u32(ihdr, static_cast<uint32_t>(H));
  ihdr += std::string{8, static_cast<char>(C == 3 ? 2 : 0), 0, 0, 0};
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

torch::Tensor read_png(const std::string& path) {
  const std::string bytes = read_file(path);
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 8 || std::memcmp(b, kSignature, 8) != 0)
    throw InputError(path + ": not a PNG file");
  size_t pos = 8;
  int64_t W = 0, H = 0, C = 0;
  std::string z;
  while (pos + 12 <= bytes.size()) {
    const uint32_t len = get_u32(b + pos);
    if (pos + 12 + len > bytes.size()) throw InputError(path + ": truncated PNG chunk");
    const std::string type(bytes.data() + pos + 4, 4);
    const unsigned char* d = b + pos + 8;
    if (type == "IHDR") {
      if (len != 13) throw InputError(path + ": bad IHDR");
      W = get_u32(d);
      H = get_u32(d + 4);
      if (d[8] != 8 || (d[9] != 0 && d[9] != 2) || d[12] != 0)
        throw InputError(path + ": only 8-bit grey or RGB PNGs without interlace are read");
      C = d[9] == 2 ? 3 : 1;
    } else if (type == "IDAT") {
      z.append(reinterpret_cast<const char*>(d), len);
    } else if (type == "IEND") {
      break;
    }
    pos += 12 + len;
  }
  if (W <= 0 || H <= 0) throw InputError(path + ": no IHDR");
  std::string raw(static_cast<size_t>(H * (W * C + 1)), '\0');
  uLongf size = static_cast<uLongf>(raw.size());
  if (uncompress(reinterpret_cast<Bytef*>(raw.data()), &size,
                 reinterpret_cast<const Bytef*>(z.data()), static_cast<uLong>(z.size())) != Z_OK ||
      size != raw.size())
    throw InputError(path + ": corrupt image data");
  auto out = torch::empty(C == 3 ? std::vector<int64_t>{H, W, 3} : std::vector<int64_t>{H, W},
                          torch::kByte);
  auto* o = out.data_ptr<uint8_t>();
  for (int64_t y = 0; y < H; ++y) {
    const auto* row = reinterpret_cast<const uint8_t*>(raw.data()) + y * (W * C + 1);
    if (row[0] != 0) throw InputError(path + ": PNG row filters other than 'none' are not read");
    std::memcpy(o + y * W * C, row + 1, static_cast<size_t>(W * C));
  }
  return out;
}

torch::Tensor to_bytes(const torch::Tensor& x) {
  return ((x.detach().to(torch::kCPU, torch::kFloat) + 1.0) * 127.5)
      .round()
      .clamp(0, 255)
      .to(torch::kByte);
}

torch::Tensor image_grid(const torch::Tensor& x, int64_t rows, int64_t cols, int64_t pad,
                         int background) {
  TORCH_CHECK(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3) && x.size(0) == rows * cols,
              "image_grid: x must be [rows * cols = ", rows * cols, ", 1 or 3, H, W], got ",
              x.sizes());
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  auto tiles = to_bytes(x).permute({0, 2, 3, 1});  // [N, H, W, C]
  auto grid =
      torch::full({rows * (H + pad) + pad, cols * (W + pad) + pad, C}, background, torch::kByte);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      grid.narrow(0, pad + r * (H + pad), H)
          .narrow(1, pad + c * (W + pad), W)
          .copy_(tiles[r * cols + c]);
  return C == 1 ? grid.squeeze(2) : grid;  // [H', W'(, 3)]
}

torch::Tensor side_by_side(const std::vector<torch::Tensor>& grids, int64_t gap, int background) {
  TORCH_CHECK(!grids.empty(), "side_by_side: no grids");
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < grids.size(); ++i) {
    TORCH_CHECK(grids[i].size(0) == grids[0].size(0) && grids[i].dim() == grids[0].dim(),
                "side_by_side: grids must share height and channels");
    if (i > 0) {
      auto sizes = grids[0].sizes().vec();
      sizes[1] = gap;
      parts.push_back(torch::full(sizes, background, torch::kByte));
    }
    parts.push_back(grids[i]);
  }
  return torch::cat(parts, 1);
}

void save_png_grid(const std::string& path, const std::vector<torch::Tensor>& batches, int64_t rows,
                   int64_t cols) {
  std::vector<torch::Tensor> grids;
  for (const auto& x : batches) grids.push_back(image_grid(x, rows, cols));
  write_png(path, side_by_side(grids));
}

}  // namespace ramflow
