// RolloutBatch::slice (see include/ramflow/method.h).
#include <torch/torch.h>

#include "ramflow/method.h"

namespace ramflow {

RolloutBatch RolloutBatch::slice(int64_t begin, int64_t end) const {
  const int64_t B = size();
  TORCH_CHECK(0 <= begin && begin < end && end <= B, "RolloutBatch::slice: [", begin, ", ", end,
              ") is not inside [0, ", B, ")");
  if (begin == 0 && end == B) return *this;
  auto rows = [&](const torch::Tensor& t, int64_t dim) {
    return t.defined() ? t.slice(dim, begin, end) : t;
  };
  RolloutBatch out;
  out.x0 = rows(x0, 0);
  out.cond = cond.slice(begin, end);
  out.reward = rows(reward, 0);
  // Whole groups when the slice is group-aligned, else one partial group.
  const bool aligned = group_size > 0 && begin % group_size == 0 && (end - begin) % group_size == 0;
  out.group_size = aligned ? group_size : end - begin;
  out.groups = aligned ? (end - begin) / group_size : 1;
  out.grid = grid;
  out.trajectory = rows(trajectory, 1);  // [N + 1, b, ...]
  out.log_prob = rows(log_prob, 1);      // [N, b]
  out.sde_steps = sde_steps;
  out.reward_grad = rows(reward_grad, 0);
  for (const auto& [key, value] : extras) out.extras[key] = rows(value, 0);
  for (const auto& [name, value] : reward_terms) out.reward_terms[name] = rows(value, 0);
  out.rows = this->rows.slice(begin, end);
  return out;
}

}  // namespace ramflow
