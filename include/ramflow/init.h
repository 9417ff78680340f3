#pragma once
// PyTorch's default initialisation of Linear and Conv2d layers, drawn from an Rng (never from
// torch's global generator, whose seed differs from process to process): weight and bias uniform in
// (-b, b), b = 1 / sqrt(fan_in), fan_in = weight[0].numel() (in for Linear, in k k for Conv2d).
#include <torch/types.h>

#include "ramflow/rng.h"

namespace ramflow {

/// Draws `weight`, then `bias` (skipped when undefined), in place as (u * 2 - 1) b with u =
/// rng.rand.
void init_layer_uniform(torch::Tensor& weight, torch::Tensor& bias, Rng& rng);

}  // namespace ramflow
