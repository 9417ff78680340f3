// GELU with the tanh approximation (see gelu_tanh.h).
#include "ramflow/gelu_tanh.h"

#include <ATen/Parallel.h>

#include "core/cpu_kernels.h"

namespace ramflow {

namespace {

constexpr int64_t kGrain = 1 << 15;  // values per task: a 128 KB slice

bool kernel_applies(const torch::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.is_contiguous();
}

void forward_into(const torch::Tensor& x, const torch::Tensor& out) {
  const float* in = x.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
    kernels::gelu_tanh(in + begin, o + begin, end - begin);
  });
}

// out = gelu(x); the gradient dx = dh gelu'(x) from the saved x (gelu is not invertible, so the
// output alone would not do).
struct GeluTanh : public torch::autograd::Function<GeluTanh> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    auto out = torch::empty_like(x);
    forward_into(x, out);
    ctx->save_for_backward({x});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto x = ctx->get_saved_variables()[0];
    // A gradient of this gradient (create_graph): LibTorch's differentiable formula.
    if (torch::GradMode::is_enabled()) return {torch::gelu_backward(grad_out[0], x, "tanh")};
    const auto dh = grad_out[0].contiguous();
    auto dx = torch::empty_like(x);
    const float *g = dh.data_ptr<float>(), *in = x.data_ptr<float>();
    float* d = dx.data_ptr<float>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      kernels::gelu_tanh_backward(g + begin, in + begin, d + begin, end - begin);
    });
    return {dx};
  }
};

}  // namespace

torch::Tensor gelu_tanh(const torch::Tensor& x, bool overwrite) {
  if (!kernel_applies(x)) return torch::gelu(x, "tanh");
  if (torch::GradMode::is_enabled() && x.requires_grad()) return GeluTanh::apply(x);
  auto out = overwrite ? x : torch::empty_like(x);
  forward_into(x, out);
  return out;
}

}  // namespace ramflow
