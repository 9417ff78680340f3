// Names of floating-point dtypes (see include/ramflow/dtypes.h).
#include "ramflow/dtypes.h"

#include <utility>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>

#include "ramflow/errors.h"

namespace ramflow {
namespace {
const std::vector<std::pair<torch::Dtype, const char*>>& names() {
  static const std::vector<std::pair<torch::Dtype, const char*>> n = {
      {torch::kFloat32, "float32"}, {torch::kFloat16, "float16"}, {torch::kBFloat16, "bfloat16"}};
  return n;
}
}  // namespace

std::string dtype_name(torch::Dtype dtype) {
  for (const auto& [d, name] : names())
    if (d == dtype) return name;
  throw Error(std::string("no name for the dtype ") + c10::toString(dtype));
}

torch::Dtype parse_dtype(const std::string& name, const std::string& what) {
  for (const auto& [d, n] : names())
    if (name == n) return d;
  throw ConfigError(what + ": unknown dtype '" + name + "' (float32, float16, bfloat16)");
}

void check_dtype_computes(torch::Dtype dtype, const torch::Device& device,
                          const std::string& what) {
  const auto o = torch::TensorOptions().dtype(dtype).device(device);
  try {
    torch::NoGradGuard no_grad;
    auto x = torch::ones({1, 4, 4, 4}, o);  // [B, C, H, W]
    x = torch::conv2d(x, torch::ones({4, 4, 3, 3}, o), torch::ones({4}, o), 1, 1);
    x = torch::group_norm(x, 2, torch::ones({4}, o), torch::zeros({4}, o), 1e-6);
    x = torch::upsample_nearest2d(torch::silu(x), {8, 8});  // [1, 4, 8, 8]
    auto t = x.flatten(2).transpose(1, 2);                  // [1, 64, 4]
    t = torch::layer_norm(t, {4}, {}, {}, 1e-6);
    t = torch::linear(torch::gelu(t, "tanh"), torch::ones({4, 4}, o), torch::ones({4}, o));
    t = torch::softmax(torch::matmul(t, t.transpose(1, 2)), -1);
    (void)t.sum().item<double>();
  } catch (const c10::Error& e) {
    throw ConfigError(what + ": this LibTorch (" + TORCH_VERSION + ") cannot compute in " +
                      dtype_name(dtype) + " on " + device.str() + " (" +
                      e.what_without_backtrace() + ")");
  }
}

}  // namespace ramflow
