#pragma once
// A small text encoder over characters: the prompt encoder of tasks whose prompts are words (the
// `words` task). It plays T5's and CLIP's part for the small MM-DiT (sd3_char.h): learned with the
// base model in pretraining, frozen in post-training.
//
// Tokens: a prompt of n <= L letters A-Z is [B, L] int64 with letter k (A = 0) as k + 1 and 0 after
// the word (padding); the empty prompt (the null condition of guidance) is all 0. The encoder puts
// a start token (id alphabet + 1) in front, so every row has a token that is not padding:
//   h_0 = E[start, tokens] + P                     [B, L + 1, E]  (token table E, positions P)
//   h_{l+1} = h'_l + MLP(LN(h'_l)),  h'_l = h_l + Attn(LN(h_l))    (pre-LN transformer layers,
//             unmasked self-attention over all L + 1 tokens: padding is a constant, learned input,
//             as SD3 reads T5's padded tokens unmasked)
//   context = LN(h_layers) [B, L + 1, E];  pooled = context[:, 0] [B, E]  (the start token's row,
//             the way CLIP pools at one token)
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json.hpp>

#include "ramflow/rng.h"

namespace ramflow {

struct CharEncoderOptions {
  TORCH_ARG(int64_t, alphabet) = 26;    // letters A.. (ids 1..alphabet); 0 = padding
  TORCH_ARG(int64_t, max_length) = 10;  // L, the longest prompt
  TORCH_ARG(int64_t, dim) = 64;         // E, the width of a context token and of pooled
  TORCH_ARG(int64_t, layers) = 2;       // transformer layers (0: embeddings only)
  TORCH_ARG(int64_t, heads) = 2;        // attention heads (E must be a multiple)

 public:
  /// {"alphabet", "max_length", "dim", "layers", "heads"}.
  nlohmann::json to_json() const;
  /// Reads the fields above (each optional); any other field, a value out of range, or E not a
  /// multiple of heads is a ConfigError naming `what`.
  static CharEncoderOptions from_json(const nlohmann::json& spec, const std::string& what);
};

/// words -> tokens [n, max_length] int64 (letter k of the alphabet as k + 1, then 0). Lower-case
/// letters count as upper-case. ConfigError naming the word when it is longer than max_length or
/// has a character outside the alphabet; "" is the empty prompt (all 0).
torch::Tensor char_tokens(const std::vector<std::string>& words, const CharEncoderOptions& options);

class CharEncoderImpl : public torch::nn::Module {
 public:
  explicit CharEncoderImpl(const CharEncoderOptions& options);
  struct Output {
    torch::Tensor context;  // [B, L + 1, E]
    torch::Tensor pooled;   // [B, E]
  };
  /// tokens [B, L] int64 -> context and pooled.
  Output forward(const torch::Tensor& tokens);
  /// Token table and positions N(0, 0.02^2) (GPT-2's), Linear layers as PyTorch initialises them,
  /// LayerNorms weight 1 and bias 0; all from `rng`.
  void reset_parameters(Rng& rng);
  const CharEncoderOptions& options() const { return options_; }

 private:
  struct Layer {
    torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
    torch::nn::Linear in_proj{nullptr}, out_proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  };
  CharEncoderOptions options_;
  torch::nn::Embedding token_embedding_{nullptr};  // [alphabet + 2, E]
  torch::Tensor position_embedding_;               // [L + 1, E]
  std::vector<Layer> layers_;
  torch::nn::LayerNorm final_norm_{nullptr};
};
TORCH_MODULE(CharEncoder);

}  // namespace ramflow
