#pragma once
// The (step, sample) rows of a stored rollout path, for the methods that train on chosen steps of
// it (Flow-GRPO, Adjoint Matching): every chosen step k of every sample i becomes one row, row j b
// + i for the j-th chosen step, so one batched forward pass evaluates them all.
#include <vector>

#include <torch/types.h>

#include "ramflow/method.h"

namespace ramflow {

struct PathRows {
  int64_t steps = 0, samples = 0;  // J chosen steps, b samples: J b rows
  torch::Tensor index;             // [J] the chosen step indices (int64, on the batch's device)
  torch::Tensor x;                 // [J b, ...] x at the chosen steps' times
  torch::Tensor x_next;            // [J b, ...] x one step later
  torch::Tensor t;                 // [J b] the chosen steps' times
  Condition cond;                  // J b rows (row j b + i: sample i's), or empty

  /// One value per chosen step, repeated over its rows: [J] -> [J b] (float, on the batch's
  /// device).
  torch::Tensor per_row(const std::vector<double>& per_step) const;
  /// Rows of a per-sample tensor [b, ...] (the same value on every step of a sample): -> [J b,
  /// ...].
  torch::Tensor of_sample(const torch::Tensor& per_sample) const;
};

/// The rows of `steps` (each in [0, N)) of batch.trajectory [N + 1, b, ...].
PathRows path_rows(const RolloutBatch& batch, const std::vector<int64_t>& steps);

}  // namespace ramflow
