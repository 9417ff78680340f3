#pragma once
// Which rows of a batch a tensor holds: one process's share of a data-parallel step, one
// micro-batch of a gradient accumulation (docs/distributed.md). A draw made for the batch's rows
// (noise, times) is made for all `total` rows and these rows are taken from it, so that the numbers
// a row gets do not depend on how the batch is split: W processes, or M micro-batches, draw what
// one process drawing for the whole batch draws. The default Rows is "every row of whatever is
// drawn" (a batch that is not split), under which each draw is exactly the plain draw.
#include <cstdint>
#include <functional>

#include <torch/types.h>

#include "ramflow/condition.h"
#include "ramflow/rng.h"

namespace ramflow {

class Rows {
 public:
  /// Every row of the batch (the batch is not split).
  Rows() = default;
  /// Rows [begin, end) of a batch of `total`.
  static Rows range(int64_t begin, int64_t end, int64_t total);
  /// The rows `index` ([n] int64, ascending, each in [0, total)) of a batch of `total`.
  Rows(torch::Tensor index, int64_t total);

  bool all() const { return !index_.defined(); }
  /// The rows held ([n] int64, CPU); undefined for all().
  const torch::Tensor& index() const { return index_; }
  /// The batch's size (0 for all(): the size of whatever is drawn).
  int64_t total() const { return total_; }
  /// The number of rows held, for all() `n_all`.
  int64_t size(int64_t n_all) const { return all() ? n_all : index_.size(0); }

  /// The same rows of the batch in which each row is repeated K times in a row (row b on rows
  /// b K .. b K + K - 1: renoise's layout).
  Rows repeated(int64_t K) const;
  /// Rows [begin, end) of the ones held.
  Rows slice(int64_t begin, int64_t end) const;
  /// The rows held, as rows of the sub-batch [offset, offset + total) of the batch (every held row
  /// must be in it): the rows of one minibatch.
  Rows within(int64_t offset, int64_t total) const;

  /// The held rows of `full` ([total, ...]); `full` itself for all().
  torch::Tensor take(const torch::Tensor& full) const;
  Condition take(const Condition& full) const;
  /// `draw(rows)` makes a tensor of `rows` rows: called with total() and the held rows taken, or
  /// for all() with `n` (the rows the caller holds).
  torch::Tensor draw(int64_t n, const std::function<torch::Tensor(int64_t rows)>& draw) const;
  /// Standard normal draws of `shape` ([n, ...]: n the rows held), row-consistent as above.
  torch::Tensor randn(Rng& rng, at::IntArrayRef shape, const torch::TensorOptions& opts = {}) const;
  /// Uniform draws on [0, 1) of `shape` ([n, ...]), likewise.
  torch::Tensor rand(Rng& rng, at::IntArrayRef shape, const torch::TensorOptions& opts = {}) const;

 private:
  torch::Tensor index_;
  int64_t total_ = 0;
};

}  // namespace ramflow
