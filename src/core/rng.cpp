// Seeded random streams (see include/ramflow/rng.h).
#include "ramflow/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace ramflow {
namespace {

// SplitMix64 finaliser: decorrelates derived seeds (seed, stream) -> seed'.
uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

torch::TensorOptions cpu_float(const torch::TensorOptions& opts) {
  auto dtype = opts.has_dtype() ? opts.dtype() : caffe2::TypeMeta::Make<float>();
  return torch::TensorOptions().dtype(dtype).device(torch::kCPU);
}

}  // namespace

Rng::Rng(uint64_t seed) : seed_(seed), gen_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

torch::Tensor Rng::state() const { return gen_.get_state(); }

void Rng::set_state(const torch::Tensor& state) { gen_.set_state(state); }

Rng Rng::fork(uint64_t stream) const { return Rng(mix(seed_ ^ mix(stream + 1))); }

Rng Rng::clone() const {
  Rng copy(seed_);
  copy.gen_ = gen_.clone();
  return copy;
}

torch::Tensor Rng::randn(at::IntArrayRef shape, const torch::TensorOptions& opts) {
  auto x = torch::randn(shape, gen_, cpu_float(opts));
  return opts.has_device() ? x.to(opts.device()) : x;
}

torch::Tensor Rng::rand(at::IntArrayRef shape, const torch::TensorOptions& opts) {
  auto x = torch::rand(shape, gen_, cpu_float(opts));
  return opts.has_device() ? x.to(opts.device()) : x;
}

int64_t Rng::randint(int64_t lo, int64_t hi) {
  TORCH_CHECK(hi > lo, "Rng::randint: empty range [", lo, ", ", hi, ")");
  return torch::randint(lo, hi, {1}, gen_, torch::kLong).item<int64_t>();
}

torch::Tensor Rng::uniform_int(int64_t hi, at::IntArrayRef shape) {
  TORCH_CHECK(hi > 0, "Rng::uniform_int: empty range [0, ", hi, ")");
  return torch::randint(0, hi, shape, gen_, torch::kLong);
}

torch::Tensor Rng::multinomial(const torch::Tensor& weights, int64_t n) {
  auto w = weights.detach().to(torch::kCPU, torch::kDouble);
  return torch::multinomial(w, n, /*replacement=*/true, gen_);
}

}  // namespace ramflow
