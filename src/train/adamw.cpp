// AdamW over one flat buffer (see include/ramflow/adamw.h).
#include "ramflow/adamw.h"

#include <cmath>

#include <torch/torch.h>

#include "core/cpu_kernels.h"
#include "ramflow/errors.h"

namespace ramflow {

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  if (params_.empty()) throw ConfigError("AdamW: no parameters to optimise");
  if (!(options_.lr() > 0)) throw ConfigError("AdamW: lr must be > 0");
  if (!(options_.beta1() >= 0 && options_.beta1() < 1 && options_.beta2() >= 0 && options_.beta2() < 1))
    throw ConfigError("AdamW: betas must be in [0, 1)");
  int64_t total = 0;
  for (const auto& p : params_) {
    TORCH_CHECK(p.requires_grad() && p.is_leaf(), "AdamW: parameters must be leaves with requires_grad");
    TORCH_CHECK(p.scalar_type() == params_[0].scalar_type() && p.device() == params_[0].device(),
                "AdamW: all parameters must share one dtype and device");
    total += p.numel();
  }
  torch::NoGradGuard no_grad;
  flat_ = torch::empty({total}, params_[0].options().requires_grad(false));
  grad_ = torch::zeros_like(flat_);
  m_ = torch::zeros_like(flat_);
  v_ = torch::zeros_like(flat_);
  int64_t offset = 0;
  for (auto& p : params_) {
    auto view = flat_.narrow(0, offset, p.numel()).view(p.sizes());
    view.copy_(p);
    p.set_data(view);  // the parameter now lives inside flat_
    p.mutable_grad() = grad_.narrow(0, offset, p.numel()).view(p.sizes());
    grad_ptrs_.push_back(p.grad().data_ptr());
    offset += p.numel();
  }
}

// Autograd accumulates into an existing .grad in place, so the views stay attached; code that replaced
// a .grad (e.g. set it to None) gets its values copied back into the flat buffer here.
void AdamW::reattach_grads() {
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined() || p.grad().data_ptr() != grad_ptrs_[i]) {
      auto view = grad_.narrow(0, offset, p.numel()).view(p.sizes());
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

void AdamW::zero_grad() {
  reattach_grads();
  grad_.zero_();
}

double AdamW::grad_norm() {
  reattach_grads();
  if (grad_.is_cpu() && grad_.scalar_type() == torch::kFloat) {  // one pass, no operators
    return std::sqrt(kernels::sum_of_squares(grad_.data_ptr<float>(), grad_.numel()));
  }
  return grad_.norm().item<double>();
}

void AdamW::clip_grad_norm(double norm, double max_norm) {
  if (max_norm > 0 && norm > max_norm) grad_.mul_(max_norm / (norm + 1e-6));
}

void AdamW::step() {
  reattach_grads();
  torch::NoGradGuard no_grad;
  ++steps_;
  const double lr = options_.lr(), b1 = options_.beta1(), b2 = options_.beta2();
  const double decay = 1.0 - lr * options_.weight_decay();
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(b2, static_cast<double>(steps_));
  if (flat_.is_cpu() && flat_.scalar_type() == torch::kFloat) {
    // The same update in one vectorised pass over the buffers.
    const kernels::AdamWStep step{static_cast<float>(b1),          static_cast<float>(b2),
                                  static_cast<float>(decay),       static_cast<float>(lr / bias1),
                                  static_cast<float>(std::sqrt(bias2)), static_cast<float>(options_.eps())};
    kernels::adamw(flat_.data_ptr<float>(), m_.data_ptr<float>(), v_.data_ptr<float>(),
                   grad_.data_ptr<float>(), flat_.numel(), step);
  } else {
    if (options_.weight_decay() != 0) flat_.mul_(decay);
    m_.mul_(b1).add_(grad_, 1.0 - b1);
    v_.mul_(b2).addcmul_(grad_, grad_, 1.0 - b2);
    auto denom = v_.sqrt().div_(std::sqrt(bias2)).add_(options_.eps());
    flat_.addcdiv_(m_, denom, -lr / bias1);
  }
  // The parameters are views with their own version counters (set_data keeps them): bump them so that
  // autograd still detects a parameter modified between a forward and its backward.
  for (auto& p : params_) torch::autograd::impl::bump_version(p);
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state() const {
  return {{"m", m_}, {"v", v_}, {"steps", torch::tensor({steps_}, torch::kLong)}};
}

void AdamW::load_state(const torch::Tensor& m, const torch::Tensor& v, int64_t steps) {
  TORCH_CHECK(m.numel() == m_.numel() && v.numel() == v_.numel(), "AdamW: state has ", m.numel(),
              " entries, the optimiser ", m_.numel());
  torch::NoGradGuard no_grad;
  m_.copy_(m.reshape({-1}));
  v_.copy_(v.reshape({-1}));
  steps_ = steps;
}

}  // namespace ramflow
