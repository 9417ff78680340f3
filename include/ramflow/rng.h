#pragma once
// Seeded random streams. Library code never touches torch's global generator: every draw comes from
// an Rng the caller owns. Draws are made on the CPU and moved to the target device, so a seed gives
// the same numbers on every device.
#include <cstdint>

#include <torch/types.h>

namespace ramflow {

class Rng {
 public:
  explicit Rng(uint64_t seed);

  /// A new independent stream derived from this seed and `stream` (e.g. a step or rank number).
  Rng fork(uint64_t stream) const;
  /// An independent copy of this stream where it stands: both then draw the same numbers (a copy
  /// of an Rng shares its generator; this one does not).
  Rng clone() const;

  /// Standard normal draws of `shape`, float32 unless `opts` says otherwise, on opts' device.
  torch::Tensor randn(at::IntArrayRef shape, const torch::TensorOptions& opts = {});
  /// Uniform draws on [0, 1).
  torch::Tensor rand(at::IntArrayRef shape, const torch::TensorOptions& opts = {});
  /// One integer drawn uniformly from [lo, hi) (hi > lo).
  int64_t randint(int64_t lo, int64_t hi);
  /// Integers drawn uniformly from [0, hi) of `shape` -> int64, CPU.
  torch::Tensor uniform_int(int64_t hi, at::IntArrayRef shape);
  /// n indices in [0, weights.size(0)) drawn with probability ∝ weights, with replacement.
  torch::Tensor multinomial(const torch::Tensor& weights, int64_t n);

  uint64_t seed() const { return seed_; }
  /// Where the stream stands: the generator's state as bytes ([n] uint8, CPU), for checkpoints.
  torch::Tensor state() const;
  /// Continues the stream from a state() of an Rng of the same seed; c10::Error for bytes that are
  /// not a generator state.
  void set_state(const torch::Tensor& state);

 private:
  uint64_t seed_;
  torch::Generator gen_;
};

}  // namespace ramflow
