#pragma once
// NumPy's .npy format (version 1.0), for handing arrays to Python (`numpy.load`):
//   "\x93NUMPY" 0x01 0x00, u16 little-endian header length, then the header, an ASCII Python dict
//   {'descr': '<f4', 'fortran_order': False, 'shape': (N, C, H, W), } padded with spaces and a
//   final '\n' so that the data starts at a multiple of 64 bytes; then the array, little-endian, C
//   order.
#include <string>

#include <torch/types.h>

namespace ramflow {

/// Writes a float32, float64, int64, int32 or uint8 tensor as .npy, atomically. Throws IOError.
void write_npy(const std::string& path, const torch::Tensor& array);
/// Reads a .npy file written by write_npy (those types, C order, little-endian). Throws InputError.
torch::Tensor read_npy(const std::string& path);

}  // namespace ramflow
