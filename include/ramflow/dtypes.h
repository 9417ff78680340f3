#pragma once
// The floating-point dtypes a model's weights may be held in, by the names PyTorch prints:
// "float32", "float16", "bfloat16".
#include <string>

#include <torch/types.h>

namespace ramflow {

/// "float32", "float16" or "bfloat16"; Error for any other dtype.
std::string dtype_name(torch::Dtype dtype);
/// The dtype of a name above; ConfigError naming `what` and the choices otherwise.
torch::Dtype parse_dtype(const std::string& name, const std::string& what);

/// ConfigError naming `what` unless this LibTorch can compute in `dtype` on `device`: a tiny run of
/// the operations the models use (matmul, convolution, layer and group norms, softmax, GELU, SiLU,
/// nearest upsampling). Debian's LibTorch 1.13 has no float16 matmul on CPUs, for one.
void check_dtype_computes(torch::Dtype dtype, const torch::Device& device, const std::string& what);

}  // namespace ramflow
