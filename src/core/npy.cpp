// .npy files (see include/ramflow/npy.h).
#include "ramflow/npy.h"

#include <cstring>
#include <map>
#include <sstream>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {
namespace {

const std::map<torch::ScalarType, std::string>& descrs() {
  static const std::map<torch::ScalarType, std::string> d = {{torch::kFloat, "<f4"},
                                                             {torch::kDouble, "<f8"},
                                                             {torch::kLong, "<i8"},
                                                             {torch::kInt, "<i4"},
                                                             {torch::kByte, "|u1"}};
  return d;
}

}  // namespace

void write_npy(const std::string& path, const torch::Tensor& array) {
  auto it = descrs().find(array.scalar_type());
  TORCH_CHECK(it != descrs().end(), "write_npy: unsupported type ", array.scalar_type());
  auto a = array.detach().to(torch::kCPU).contiguous();
  std::ostringstream h;
  h << "{'descr': '" << it->second << "', 'fortran_order': False, 'shape': (";
  for (int64_t i = 0; i < a.dim(); ++i)
    h << a.size(i) << (a.dim() == 1 || i + 1 < a.dim() ? ", " : "");
  h << "), }";
  std::string header = h.str();
  const size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  const auto len = static_cast<uint16_t>(header.size());
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>(len >> 8);
  out += header;
  out.append(static_cast<const char*>(a.data_ptr()),
             static_cast<size_t>(a.nbytes()));  // little-endian host
  write_file_atomic(path, out);
}

torch::Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0 || bytes[6] != '\x01')
    throw InputError(path + ": not a version-1 .npy file");
  const size_t len = static_cast<unsigned char>(bytes[8]) |
                     (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
  if (10 + len > bytes.size()) throw InputError(path + ": truncated .npy header");
  const std::string header = bytes.substr(10, len);
  torch::ScalarType type = torch::kFloat;
  bool found = false;
  for (const auto& [t, d] : descrs())
    if (header.find("'descr': '" + d + "'") != std::string::npos) {
      type = t;
      found = true;
    }
  if (!found || header.find("'fortran_order': False") == std::string::npos)
    throw InputError(path + ": unsupported .npy dtype or order");
  const auto open = header.find("'shape': (");
  const auto close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos)
    throw InputError(path + ": .npy header has no shape");
  std::vector<int64_t> shape;
  std::stringstream dims(header.substr(open + 10, close - open - 10));
  std::string item;
  while (std::getline(dims, item, ','))
    if (item.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(item));
  auto out = torch::empty(shape, type);
  if (10 + len + static_cast<size_t>(out.nbytes()) != bytes.size())
    throw InputError(path + ": .npy data length does not match its shape");
  std::memcpy(out.data_ptr(), bytes.data() + 10 + len, static_cast<size_t>(out.nbytes()));
  return out;
}

}  // namespace ramflow
