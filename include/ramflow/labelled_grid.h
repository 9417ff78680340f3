#pragma once
// Image grids for a person to read (full library: text by FreeType): grids of samples side by side
// with a heading over each (base | post-trained | ...), a label left of each row (the class or the
// prompt), and tiles enlarged by a whole factor so that small images are legible (a 28-pixel
// Fashion-MNIST image drawn 56 pixels tall). Words in DejaVu Sans (Debian's fonts-dejavu-core);
// without that font the grids are written without words.
#include <string>
#include <vector>

#include <torch/types.h>

namespace ramflow {

/// The whole factor by which tiles of `tile_h` x `tile_w` pixels are enlarged in a picture of
/// `panels` grids of `cols` columns: the smallest that makes a tile at least 56 pixels tall, kept
/// to at most 2400 pixels of tiles across (and at least 1).
int64_t legible_scale(int64_t tile_h, int64_t tile_w, int64_t panels, int64_t cols);

/// Writes batches x_i [rows * cols, C, H, W] in [-1, 1] (row-major) as grids side by side, with
/// `headings` (one per batch, or none) above them and `row_labels` (one per row, or none) on the
/// left, as one PNG (written atomically). Throws IOError when the file cannot be written.
void save_labelled_grids(const std::string& path, const std::vector<torch::Tensor>& batches,
                         const std::vector<std::string>& headings,
                         const std::vector<std::string>& row_labels, int64_t rows, int64_t cols);

}  // namespace ramflow
