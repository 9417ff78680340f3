// Scaled dot-product attention (see include/ramflow/attention.h).
#include "ramflow/attention.h"

#include <cmath>

#include <torch/torch.h>
#include <torch/version.h>

namespace ramflow {

torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "attention: q, k, v must be [B, h, N, d], got ", q.sizes(), ", ", k.sizes(), ", ",
              v.sizes());
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto weights = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) * scale, -1);  // [B, h, N, M]
  return torch::matmul(weights, v);                                                  // [B, h, N, d]
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "attention: q, k, v must be [B, h, N, d], got ", q.sizes(), ", ", k.sizes(), ", ",
              v.sizes());
  return at::scaled_dot_product_attention(q, k, v);  // scale 1/sqrt(d) by default
#else
  return attention_reference(q, k, v);
#endif
}

}  // namespace ramflow
