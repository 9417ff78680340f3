#pragma once
// AdamW over flat buffers. The constructor moves the trainable parameters of each dtype and device
// (a group) into one contiguous tensor: each parameter becomes a view of it, and its .grad a view
// of the group's flat gradient buffer, which autograd accumulates into in place. A step is then
// about ten operators however many tensors the model has, and the gradient norm one reduction per
// group. The moments m and v are float32 whatever the parameters' dtype (LoRA adapters in float32
// beside a bfloat16 base; a bfloat16 model trained whole), and the update is computed in float32
// and rounded once into the parameters. The update is torch.optim.AdamW's (decoupled weight decay):
//   theta <- theta (1 - lr wd)
//   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2                       (k = steps taken, from
//   1) theta <- theta - (lr / (1 - b1^k)) m / (sqrt(v) / sqrt(1 - b2^k) + eps)
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
  /// `params`: floating-point leaf tensors with requires_grad, of any dtypes and devices.
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
  /// The total number of trainable scalars.
  int64_t numel() const { return numel_; }
  /// The groups (one per dtype and device, in the order of their first parameter) and their flat
  /// parameter and gradient buffers.
  size_t groups() const { return groups_.size(); }
  const torch::Tensor& flat_params(size_t group = 0) const { return groups_.at(group).flat; }
  const torch::Tensor& flat_grad(size_t group = 0) const { return groups_.at(group).grad; }
  /// The flat gradient of `group` with every parameter's .grad attached to it (a view that
  /// shares its storage): what an all-reduce sums over the ranks in place.
  torch::Tensor gradients(size_t group = 0);
  /// Optimiser state for checkpoints: the moments {"m", "v"} (float32, [numel], the groups in
  /// order, on the CPU) and the step count.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const torch::Tensor& m, const torch::Tensor& v, int64_t steps);

 private:
  struct Group {
    std::vector<torch::Tensor> params;
    std::vector<void*> grad_ptrs;  // where each parameter's .grad must point
    torch::Tensor flat, grad, m, v;
  };
  void reattach_grads();
  std::vector<Group> groups_;
  int64_t numel_ = 0;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

}  // namespace ramflow
