#pragma once
// GELU with the tanh approximation (the MM-DiT's feed-forward layers).
#include <torch/torch.h>

namespace ramflow {

/// gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), diffusers' GELU(approximate="tanh").
/// A CPU float32 contiguous x goes through ramflow's vector kernel (src/core/cpu_kernels.h) on
/// LibTorch's threads, with its own backward when a gradient is recorded; any other x through
/// torch::gelu. With `overwrite`, and no gradient recorded, the result is written over x (the
/// caller gives up a temporary: no new [B, n, 4D] block).
torch::Tensor gelu_tanh(const torch::Tensor& x, bool overwrite = false);

}  // namespace ramflow
