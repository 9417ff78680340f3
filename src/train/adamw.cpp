// AdamW over flat buffers, one per dtype and device (see include/ramflow/adamw.h).
#include "ramflow/adamw.h"

#include <cmath>

#include <torch/torch.h>

#include "core/cpu_kernels.h"
#include "ramflow/errors.h"

namespace ramflow {

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions options) : options_(options) {
  if (params.empty()) throw ConfigError("AdamW: no parameters to optimise");
  if (!(options_.lr() > 0)) throw ConfigError("AdamW: lr must be > 0");
  if (!(options_.beta1() >= 0 && options_.beta1() < 1 && options_.beta2() >= 0 &&
        options_.beta2() < 1))
    throw ConfigError("AdamW: betas must be in [0, 1)");
  // The groups: the parameters of each (dtype, device), in the order of their first parameter.
  for (auto& p : params) {
    TORCH_CHECK(p.requires_grad() && p.is_leaf(),
                "AdamW: parameters must be leaves with requires_grad");
    TORCH_CHECK(p.is_floating_point(), "AdamW: parameters must be floating point, got ",
                p.scalar_type());
    Group* g = nullptr;
    for (auto& h : groups_)
      if (h.params.front().scalar_type() == p.scalar_type() &&
          h.params.front().device() == p.device())
        g = &h;
    if (!g) g = &groups_.emplace_back();
    g->params.push_back(p);
  }
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    int64_t total = 0;
    for (const auto& p : g.params) total += p.numel();
    const auto options = g.params.front().options().requires_grad(false);
    g.flat = torch::empty({total}, options);
    g.grad = torch::zeros_like(g.flat);
    g.m = torch::zeros({total},
                       options.dtype(torch::kFloat));  // moments in float32 whatever the dtype
    g.v = torch::zeros_like(g.m);
    int64_t offset = 0;
    for (auto& p : g.params) {
      auto view = g.flat.narrow(0, offset, p.numel()).view(p.sizes());
      view.copy_(p);
      p.set_data(view);  // the parameter now lives inside the group's flat buffer
      p.mutable_grad() = g.grad.narrow(0, offset, p.numel()).view(p.sizes());
      g.grad_ptrs.push_back(p.grad().data_ptr());
      offset += p.numel();
    }
    numel_ += total;
  }
}

// Autograd accumulates into an existing .grad in place, so the views stay attached; code that
// replaced a .grad (e.g. set it to None) gets its values copied back into the flat buffer here.
void AdamW::reattach_grads() {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    int64_t offset = 0;
    for (size_t i = 0; i < g.params.size(); ++i) {
      auto& p = g.params[i];
      if (!p.grad().defined() || p.grad().data_ptr() != g.grad_ptrs[i]) {
        auto view = g.grad.narrow(0, offset, p.numel()).view(p.sizes());
        if (p.grad().defined()) {
          view.copy_(p.grad());
        } else {
          view.zero_();
        }
        p.mutable_grad() = view;
      }
      offset += p.numel();
    }
  }
}

void AdamW::zero_grad() {
  reattach_grads();
  for (auto& g : groups_) g.grad.zero_();
}

torch::Tensor AdamW::gradients(size_t group) {
  reattach_grads();
  return groups_.at(group).grad;
}

double AdamW::grad_norm() {
  reattach_grads();
  double sum = 0;
  for (const auto& g : groups_) {
    if (g.grad.is_cpu() && g.grad.scalar_type() == torch::kFloat) {  // one pass, no operators
      sum += kernels::sum_of_squares(g.grad.data_ptr<float>(), g.grad.numel());
    } else {
      sum += g.grad.to(torch::kDouble).square().sum().item<double>();
    }
  }
  return std::sqrt(sum);
}

void AdamW::clip_grad_norm(double norm, double max_norm) {
  if (max_norm > 0 && norm > max_norm)
    for (auto& g : groups_) g.grad.mul_(max_norm / (norm + 1e-6));
}

void AdamW::step() {
  reattach_grads();
  torch::NoGradGuard no_grad;
  ++steps_;
  const double lr = options_.lr(), b1 = options_.beta1(), b2 = options_.beta2();
  const double decay = 1.0 - lr * options_.weight_decay();
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(b2, static_cast<double>(steps_));
  for (auto& g : groups_) {
    if (g.flat.is_cpu() && g.flat.scalar_type() == torch::kFloat) {
      // The same update in one vectorised pass over the buffers.
      const kernels::AdamWStep step{static_cast<float>(b1),
                                    static_cast<float>(b2),
                                    static_cast<float>(decay),
                                    static_cast<float>(lr / bias1),
                                    static_cast<float>(std::sqrt(bias2)),
                                    static_cast<float>(options_.eps())};
      kernels::adamw(g.flat.data_ptr<float>(), g.m.data_ptr<float>(), g.v.data_ptr<float>(),
                     g.grad.data_ptr<float>(), g.flat.numel(), step);
      continue;
    }
    // Other dtypes and devices: the update in float32 (the moments' dtype), rounded once into the
    // parameters.
    const auto grad = g.grad.to(torch::kFloat);
    auto theta = g.flat.to(torch::kFloat);
    if (options_.weight_decay() != 0) theta.mul_(decay);
    g.m.mul_(b1).add_(grad, 1.0 - b1);
    g.v.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
    auto denom = g.v.sqrt().div_(std::sqrt(bias2)).add_(options_.eps());
    theta.addcdiv_(g.m, denom, -lr / bias1);
    g.flat.copy_(theta);
  }
  // The parameters are views with their own version counters (set_data keeps them): bump them so
  // that autograd still detects a parameter modified between a forward and its backward.
  for (auto& g : groups_)
    for (auto& p : g.params) torch::autograd::impl::bump_version(p);
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state() const {
  std::vector<torch::Tensor> m, v;
  for (const auto& g : groups_) {
    m.push_back(g.m.cpu());
    v.push_back(g.v.cpu());
  }
  return {
      {"m", torch::cat(m)}, {"v", torch::cat(v)}, {"steps", torch::tensor({steps_}, torch::kLong)}};
}

void AdamW::load_state(const torch::Tensor& m, const torch::Tensor& v, int64_t steps) {
  TORCH_CHECK(m.numel() == numel_ && v.numel() == numel_, "AdamW: state has ", m.numel(),
              " entries, the optimiser ", numel_);
  torch::NoGradGuard no_grad;
  const auto m_flat = m.reshape({-1}), v_flat = v.reshape({-1});
  int64_t offset = 0;
  for (auto& g : groups_) {
    g.m.copy_(m_flat.narrow(0, offset, g.m.numel()));
    g.v.copy_(v_flat.narrow(0, offset, g.v.numel()));
    offset += g.m.numel();
  }
  steps_ = steps;
}

}  // namespace ramflow
