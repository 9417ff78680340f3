#pragma once
// Scaled dot-product attention without a mask:
//   attention(q, k, v) = softmax(q k^T / sqrt(d)) v,   q [B, h, N, d], k, v [B, h, M, d] -> [B, h,
//   N, d]
// Through LibTorch's scaled_dot_product_attention where the LibTorch has it (2.0 and later: flash
// and memory-efficient kernels on CUDA, a fused kernel on CPUs), else the explicit formula
// (Debian's LibTorch 1.13). The softmax is taken in the inputs' dtype, as PyTorch's is.
#include <torch/types.h>

namespace ramflow {

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

/// The explicit formula, always: the reference the tests hold attention() to.
torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v);

}  // namespace ramflow
