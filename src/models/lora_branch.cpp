// LoRA's low-rank branch in the layer calls of the models (see include/ramflow/lora_branch.h).
#include "ramflow/lora_branch.h"

#include <variant>

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {
namespace {

thread_local const LoraBranches* active = nullptr;
thread_local std::vector<char>* active_reached = nullptr;

const LoraBranch* branch_of(const torch::nn::Module& layer) {
  if (!active) return nullptr;
  const auto it = active->find(&layer);
  if (it == active->end()) return nullptr;
  if (active_reached) (*active_reached)[it->second.index] = 1;
  return &it->second;
}

// Conv2d's options hold variants: c10::variant in LibTorch 1.13, std::variant in later ones. With
// std::get_if in scope, an unqualified get_if<T> also finds c10::get_if by argument-dependent
// lookup.
using std::get_if;

// The layer's padding as two numbers: a fixed amount, or 0 for kValid (check_lora_conv refuses the
// rest).
std::vector<int64_t> fixed_padding(const torch::nn::Conv2dImpl& layer) {
  const auto& p = layer.options.padding();
  if (const auto* a = get_if<torch::ExpandingArray<2>>(&p)) return {(**a)[0], (**a)[1]};
  if (get_if<torch::enumtype::kValid>(&p)) return {0, 0};
  return {};
}

}  // namespace

LoraScope::LoraScope(const LoraBranches* branches, std::vector<char>* reached)
    : previous_(active), previous_reached_(active_reached) {
  active = branches;
  active_reached = reached;
}

LoraScope::~LoraScope() {
  active = previous_;
  active_reached = previous_reached_;
}

const LoraBranches* active_lora_branches() { return active; }

torch::Tensor layer_forward(torch::nn::LinearImpl& layer, const torch::Tensor& x) {
  const LoraBranch* b = branch_of(layer);
  if (!b) return layer.forward(x);  // W0 x + b: [..., out]
  namespace F = torch::nn::functional;
  if (layer.weight.scalar_type() == b->A.scalar_type() && x.scalar_type() == b->A.scalar_type()) {
    if (!torch::GradMode::is_enabled()) {
      // Without gradients, one product with the merged weight W0 + s B A [out, in] (2 r in out
      // flops to form, against 2 n in out for the product with n rows) instead of three products
      // and two passes over the output. Equal to W0 x + s B (A x) up to float rounding.
      return F::linear(x, torch::addmm(layer.weight, b->B, b->A, 1.0, b->scale), layer.bias);
    }
    // W0 x + b, then s B (A x) accumulated into it by the second product (addmm's beta = 1).
    const auto y = layer.forward(x);    // [..., out]
    const auto a = F::linear(x, b->A);  // [..., r]
    return torch::addmm(y.reshape({-1, y.size(-1)}), a.reshape({-1, a.size(-1)}), b->B.t(), 1.0,
                        b->scale)
        .view(y.sizes());
  }
  // Weights held in another dtype than the float32 branch: B (A x) in float32, added in y's dtype
  // (a delta s B A merged into bfloat16 weights would round away).
  auto y = layer.forward(x);
  const auto z = F::linear(F::linear(x.to(b->A.scalar_type()), b->A), b->B);  // [..., out]
  return y + (b->scale * z).to(y.scalar_type());
}

torch::Tensor layer_forward(torch::nn::Conv2dImpl& layer, const torch::Tensor& x) {
  auto y = layer.forward(x);  // W0 * x + b: [B, out, H', W']
  if (const LoraBranch* b = branch_of(layer)) {
    const auto& o = layer.options;
    const auto padding = fixed_padding(layer);
    // A * x: [B, r, H', W']
    auto z = torch::conv2d(x.to(b->A.scalar_type()), b->A, {}, *o.stride(), padding, *o.dilation(),
                           o.groups());
    z = torch::conv2d(z, b->B);  // B * (A * x), 1x1: [B, out, H', W']
    y = y + (b->scale * z).to(y.scalar_type());
  }
  return y;
}

void check_lora_conv(const torch::nn::Conv2dImpl& layer, const std::string& name) {
  const bool zeros = get_if<torch::enumtype::kZeros>(&layer.options.padding_mode()) != nullptr;
  if (!zeros || fixed_padding(layer).empty() || layer.options.groups() != 1)
    throw ConfigError(
        "LoRA: layer '" + name +
        "' is a Conv2d with padding 'same', a non-zero padding mode or groups; the low-rank branch "
        "supports zero padding by a fixed amount and groups 1");
}

}  // namespace ramflow
