// Rows of a split batch (see include/ramflow/rows.h).
#include "ramflow/rows.h"

#include <torch/torch.h>

namespace ramflow {

Rows::Rows(torch::Tensor index, int64_t total) : index_(std::move(index)), total_(total) {
  TORCH_CHECK(index_.dim() == 1 && index_.scalar_type() == torch::kLong && index_.is_cpu(),
              "Rows: index must be [n] int64 on the CPU, got ", index_.sizes(), " ",
              index_.dtype());
  TORCH_CHECK(total_ >= 0 && (index_.numel() == 0 || (index_.min().item<int64_t>() >= 0 &&
                                                      index_.max().item<int64_t>() < total_)),
              "Rows: an index outside [0, ", total_, ")");
}

Rows Rows::range(int64_t begin, int64_t end, int64_t total) {
  TORCH_CHECK(0 <= begin && begin <= end && end <= total, "Rows: [", begin, ", ", end,
              ") is not inside [0, ", total, ")");
  return Rows(torch::arange(begin, end, torch::kLong), total);
}

Rows Rows::repeated(int64_t K) const {
  TORCH_CHECK(K >= 1, "Rows::repeated: K must be >= 1, got ", K);
  if (all() || K == 1) return *this;
  // Row b of the batch becomes rows b K + k, k = 0 .. K - 1.
  auto idx = (index_.unsqueeze(1) * K + torch::arange(K, torch::kLong).unsqueeze(0)).reshape({-1});
  return Rows(idx, total_ * K);
}

Rows Rows::slice(int64_t begin, int64_t end) const {
  if (all()) return *this;
  TORCH_CHECK(0 <= begin && begin <= end && end <= index_.size(0), "Rows::slice: [", begin, ", ",
              end, ") of ", index_.size(0), " rows");
  return Rows(index_.slice(0, begin, end), total_);
}

Rows Rows::within(int64_t offset, int64_t total) const {
  if (all()) return *this;
  auto idx = index_ - offset;
  return Rows(idx, total);  // the constructor checks that every row is inside the sub-batch
}

torch::Tensor Rows::take(const torch::Tensor& full) const {
  if (all()) return full;
  TORCH_CHECK(full.dim() >= 1 && full.size(0) == total_, "Rows::take: a tensor of ", full.sizes(),
              " is not a batch of ", total_, " rows");
  return full.index_select(0, index_.to(full.device()));
}

Condition Rows::take(const Condition& full) const {
  if (all() || !full.defined()) return full;
  TORCH_CHECK(full.size() == total_, "Rows::take: conditions of ", full.size(),
              " rows are not a batch of ", total_);
  return full.index_select(index_);
}

torch::Tensor Rows::draw(int64_t n, const std::function<torch::Tensor(int64_t rows)>& draw) const {
  if (all()) return draw(n);
  TORCH_CHECK(n == index_.size(0), "Rows::draw: ", n, " rows asked of a share of ", index_.size(0));
  return take(draw(total_));
}

namespace {
std::vector<int64_t> with_rows(at::IntArrayRef shape, int64_t rows) {
  std::vector<int64_t> s = shape.vec();
  s.at(0) = rows;
  return s;
}
}  // namespace

torch::Tensor Rows::randn(Rng& rng, at::IntArrayRef shape, const torch::TensorOptions& opts) const {
  TORCH_CHECK(!shape.empty(), "Rows::randn: a shape without rows");
  return draw(shape[0], [&](int64_t rows) { return rng.randn(with_rows(shape, rows), opts); });
}

torch::Tensor Rows::rand(Rng& rng, at::IntArrayRef shape, const torch::TensorOptions& opts) const {
  TORCH_CHECK(!shape.empty(), "Rows::rand: a shape without rows");
  return draw(shape[0], [&](int64_t rows) { return rng.rand(with_rows(shape, rows), opts); });
}

}  // namespace ramflow
