#pragma once
// The IDX format of LeCun's MNIST files (and Fashion-MNIST's): a big-endian header, then the array.
//   bytes 0-1  zero
//   byte  2    element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E
//   float64 byte  3    rank r (1 .. 4 here) r x uint32 big-endian sizes, then prod(sizes) elements,
//   big-endian, row-major.
// Files may be gzip-compressed (as Debian's dataset-fashion-mnist ships them); the reader tells by
// the gzip magic. Everything is checked before the array is allocated: the magic, the type, the
// rank, every size, and the length (the file's size, or for gzip the uncompressed length in its
// trailer, which is modulo 2^32); then the read must end exactly where the header says.
#include <string>

#include <torch/types.h>

namespace ramflow {

/// Reads an IDX file into a tensor of its element type and shape (uint8 -> kByte, int8 -> kChar,
/// int16 -> kShort, int32 -> kInt, float32 -> kFloat, float64 -> kDouble). `rank` > 0 requires that
/// rank. Throws InputError naming the file and what is wrong: missing, not IDX, unknown type, bad
/// rank or size, truncated, or longer than its header says.
torch::Tensor read_idx(const std::string& path, int64_t rank = 0);

/// Writes a tensor (one of the types above, rank 1 .. 4) as IDX; gzip-compressed when `gzip`. For
/// tests and for exporting data; atomic (temporary file, then rename).
void write_idx(const std::string& path, const torch::Tensor& array, bool gzip = false);

}  // namespace ramflow
