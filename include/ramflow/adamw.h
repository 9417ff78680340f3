#pragma once
// AdamW over one flat buffer. The constructor moves the trainable parameters into one contiguous tensor:
// each parameter becomes a view of it, and its .grad a view of one flat gradient buffer, which autograd
// accumulates into in place. A step is then about ten operators however many tensors the model has, and
// the gradient norm is one reduction. The update is torch.optim.AdamW's (decoupled weight decay):
//   theta <- theta (1 - lr wd)
//   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2                       (k = steps taken, from 1)
//   theta <- theta - (lr / (1 - b1^k)) m / (sqrt(v) / sqrt(1 - b2^k) + eps)
// Unlike torch.optim, a parameter that received no gradient this step is updated with g = 0.
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

namespace ramflow {

struct AdamWOptions {
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.0;
};

class AdamW {
 public:
  /// `params`: leaf tensors with requires_grad, all of one dtype and device.
  AdamW(std::vector<torch::Tensor> params, AdamWOptions options);
  /// Zeroes the flat gradient (every parameter's .grad).
  void zero_grad();
  /// sqrt(sum of all squared gradient entries).
  double grad_norm();
  /// Scales the gradients by max_norm / norm when norm > max_norm.
  void clip_grad_norm(double norm, double max_norm);
  void step();

  int64_t steps() const { return steps_; }
  const AdamWOptions& options() const { return options_; }
  /// The flat parameter, gradient and moment buffers (numel = total trainable scalars).
  const torch::Tensor& flat_params() const { return flat_; }
  const torch::Tensor& flat_grad() const { return grad_; }
  /// Optimiser state for checkpoints: {"m", "v"} buffers and the step count.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const torch::Tensor& m, const torch::Tensor& v, int64_t steps);

 private:
  void reattach_grads();
  std::vector<torch::Tensor> params_;
  std::vector<void*> grad_ptrs_;  // where each parameter's .grad must point
  torch::Tensor flat_, grad_, m_, v_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

}  // namespace ramflow
