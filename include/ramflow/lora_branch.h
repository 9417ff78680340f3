#pragma once
// The Linear and Conv2d calls of ramflow's models, with LoRA's low-rank branch (lora.h):
//   y = W0 x + b + s B (A x)
// where A, B, s are the adapter of that layer in force on this thread (a LoraScope installs a
// wrapper's adapters for one forward call), or y = W0 x + b when it has none. For a Conv2d, A is a
// convolution with the layer's kernel size, stride, padding and dilation ([r, in, kh, kw]) and B a
// 1x1 convolution
// ([out, r, 1, 1]), so that B (A x) is the convolution with the merged weight B A. The branch runs
// in the adapter's dtype (float32) and is added in the layer's, so a bfloat16 base keeps float32
// adapters and gradients; the base's weights are never written, and models that share one base (a
// policy, its EMA copies, parallel runs) can run at once on several threads.
//
// A model whose layers LoRA may adapt calls each of them through layer_forward (the contract test
// of models checks that every adaptable layer is reached).
#include <cstdint>
#include <unordered_map>
#include <vector>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

namespace ramflow {

/// One adapted layer's branch: A [r, in(, kh, kw)], B [out, r(, 1, 1)], the scale s = alpha / r,
/// and its index among the wrapper's adapters (for the reach check).
struct LoraBranch {
  torch::Tensor A, B;
  double scale = 1.0;
  size_t index = 0;
};
using LoraBranches = std::unordered_map<const torch::nn::Module*, LoraBranch>;

/// Installs `branches` for the calls of this thread until destroyed (then the previous scope is
/// back); with `reached`, sets reached[index] for each branch that a call took.
class LoraScope {
 public:
  explicit LoraScope(const LoraBranches* branches, std::vector<char>* reached = nullptr);
  ~LoraScope();
  LoraScope(const LoraScope&) = delete;
  LoraScope& operator=(const LoraScope&) = delete;

 private:
  const LoraBranches* previous_;
  std::vector<char>* previous_reached_;
};

/// The branches in force on this thread (null when none): for code that runs a forward again later,
/// on another thread or after the scope ended (gradient checkpointing's recomputation), and
/// installs them again with a LoraScope.
const LoraBranches* active_lora_branches();

torch::Tensor layer_forward(torch::nn::LinearImpl& layer, const torch::Tensor& x);
torch::Tensor layer_forward(torch::nn::Conv2dImpl& layer, const torch::Tensor& x);

/// ConfigError unless `layer` pads with zeros by a fixed amount (what the branch supports).
void check_lora_conv(const torch::nn::Conv2dImpl& layer, const std::string& name);

}  // namespace ramflow
