#pragma once
// Images for reports: PNG files (8-bit grey or RGB, written with zlib, atomically) and grids of
// samples. Sample images are x [N, C, H, W] with values in [-1, 1] (C = 1 grey, C = 3 RGB), the
// engine's convention; a pixel's byte is round((x + 1) * 127.5), clamped to [0, 255].
#include <string>
#include <vector>

#include <torch/types.h>

namespace ramflow {

/// Writes `pixels` (uint8 [H, W] grey or [H, W, 3] RGB) as a PNG file, atomically. Throws IOError.
void write_png(const std::string& path, const torch::Tensor& pixels);
/// The PNG file's bytes for `pixels` (as write_png).
std::string encode_png(const torch::Tensor& pixels);
/// Reads a PNG written by write_png (8-bit grey or RGB, no interlace) -> uint8 [H, W] or [H, W, 3].
/// For tests and round trips; throws InputError on anything else.
torch::Tensor read_png(const std::string& path);

/// Bytes of images x [N, C, H, W] in [-1, 1] -> uint8 [N, C, H, W].
torch::Tensor to_bytes(const torch::Tensor& x);

/// Tiles images x [N, C, H, W] (N = rows * cols, row-major) into one picture with `pad` pixels of
/// `background` (0 .. 255) between and around the tiles -> uint8 [H', W'] (C = 1) or [H', W', 3].
torch::Tensor image_grid(const torch::Tensor& x, int64_t rows, int64_t cols, int64_t pad = 2,
                         int background = 255);

/// Grids side by side (same heights), `gap` pixels of `background` apart -> one picture.
torch::Tensor side_by_side(const std::vector<torch::Tensor>& grids, int64_t gap = 8,
                           int background = 255);

/// Writes grids of image batches side by side as one PNG: each x_i [rows * cols, C, H, W] in [-1,
/// 1].
void save_png_grid(const std::string& path, const std::vector<torch::Tensor>& batches, int64_t rows,
                   int64_t cols);

}  // namespace ramflow
