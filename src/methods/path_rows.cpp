// The (step, sample) rows of a stored rollout path (see include/ramflow/path_rows.h).
#include "ramflow/path_rows.h"

#include <torch/torch.h>

namespace ramflow {

torch::Tensor PathRows::per_row(const std::vector<double>& per_step) const {
  TORCH_CHECK(static_cast<int64_t>(per_step.size()) == steps,
              "PathRows::per_row: ", per_step.size(), " values for ", steps, " steps");
  return torch::tensor(per_step, x.options().dtype(x.scalar_type()))
      .view({steps, 1})
      .expand({steps, samples})
      .reshape({steps * samples});
}

torch::Tensor PathRows::of_sample(const torch::Tensor& per_sample) const {
  TORCH_CHECK(per_sample.size(0) == samples, "PathRows::of_sample: ", per_sample.size(0),
              " rows for ", samples, " samples");
  std::vector<int64_t> reps(per_sample.dim(), 1);
  reps[0] = steps;
  return per_sample.repeat(reps);  // row j b + i = sample i
}

PathRows path_rows(const RolloutBatch& batch, const std::vector<int64_t>& steps) {
  TORCH_CHECK(batch.trajectory.defined(), "path_rows: the batch has no trajectory");
  const int64_t N = batch.trajectory.size(0) - 1;
  TORCH_CHECK(!steps.empty(), "path_rows: no steps chosen");
  for (int64_t k : steps)
    TORCH_CHECK(k >= 0 && k < N, "path_rows: step ", k, " outside [0, ", N, ")");
  PathRows rows;
  rows.steps = static_cast<int64_t>(steps.size());
  rows.samples = batch.trajectory.size(1);
  rows.index = torch::tensor(
      steps, torch::TensorOptions().dtype(torch::kLong).device(batch.trajectory.device()));
  std::vector<int64_t> shape = batch.trajectory.sizes().slice(1).vec();
  shape[0] = rows.steps * rows.samples;
  rows.x = batch.trajectory.index_select(0, rows.index).reshape(shape);           // [J b, ...]
  rows.x_next = batch.trajectory.index_select(0, rows.index + 1).reshape(shape);  // [J b, ...]
  std::vector<double> t;
  for (int64_t k : steps) t.push_back(batch.grid[k]);
  rows.t = rows.per_row(t);
  rows.cond =
      batch.cond.index_select(torch::arange(rows.samples).repeat({rows.steps}));  // J b rows
  return rows;
}

}  // namespace ramflow
