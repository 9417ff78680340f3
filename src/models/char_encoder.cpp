// The character text encoder (see include/ramflow/char_encoder.h).
#include "ramflow/char_encoder.h"

#include <torch/torch.h>

#include "ramflow/attention.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/gelu_tanh.h"
#include "ramflow/init.h"
#include "ramflow/lora_branch.h"

namespace ramflow {

nlohmann::json CharEncoderOptions::to_json() const {
  return {{"alphabet", alphabet_},
          {"max_length", max_length_},
          {"dim", dim_},
          {"layers", layers_},
          {"heads", heads_}};
}

CharEncoderOptions CharEncoderOptions::from_json(const nlohmann::json& spec,
                                                 const std::string& what) {
  if (!spec.is_object()) throw ConfigError(what + ": must be an object");
  SpecReader r(spec, what);
  CharEncoderOptions o;
  o.alphabet(r.integer("alphabet", o.alphabet(), 1, 26))
      .max_length(r.integer("max_length", o.max_length(), 1, 256))
      .dim(r.integer("dim", o.dim(), 1, 4096))
      .layers(r.integer("layers", o.layers(), 0, 64))
      .heads(r.integer("heads", o.heads(), 1, 64));
  r.finish();
  if (o.dim() % o.heads() != 0)
    throw ConfigError(what + ": dim " + std::to_string(o.dim()) + " is not a multiple of heads " +
                      std::to_string(o.heads()));
  return o;
}

torch::Tensor char_tokens(const std::vector<std::string>& words, const CharEncoderOptions& o) {
  const auto n = static_cast<int64_t>(words.size());
  auto tokens = torch::zeros({n, o.max_length()}, torch::kLong);  // [n, L], 0 = padding
  auto a = tokens.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const std::string& w = words[static_cast<size_t>(i)];
    if (static_cast<int64_t>(w.size()) > o.max_length())
      throw ConfigError("prompt '" + w + "' has " + std::to_string(w.size()) +
                        " letters; the text encoder reads at most " +
                        std::to_string(o.max_length()));
    for (size_t j = 0; j < w.size(); ++j) {
      const char c = w[j] >= 'a' && w[j] <= 'z' ? static_cast<char>(w[j] - 'a' + 'A') : w[j];
      const int64_t k = c - 'A';
      if (k < 0 || k >= o.alphabet())
        throw ConfigError("prompt '" + w + "': character '" + std::string(1, w[j]) +
                          "' is not one of the letters A-" +
                          std::string(1, static_cast<char>('A' + o.alphabet() - 1)));
      a[i][static_cast<int64_t>(j)] = k + 1;
    }
  }
  return tokens;
}

CharEncoderImpl::CharEncoderImpl(const CharEncoderOptions& options) : options_(options) {
  const int64_t E = options_.dim();
  token_embedding_ =
      register_module("token_embedding", torch::nn::Embedding(options_.alphabet() + 2, E));
  position_embedding_ =
      register_parameter("position_embedding", torch::zeros({options_.max_length() + 1, E}));
  auto layers = register_module("layers", torch::nn::ModuleList());
  auto ln = [E] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({E})); };
  for (int64_t l = 0; l < options_.layers(); ++l) {
    auto m = std::make_shared<torch::nn::Module>();
    Layer layer;
    layer.norm1 = m->register_module("norm1", ln());
    layer.in_proj = m->register_module("in_proj", torch::nn::Linear(E, 3 * E));
    layer.out_proj = m->register_module("out_proj", torch::nn::Linear(E, E));
    layer.norm2 = m->register_module("norm2", ln());
    layer.fc1 = m->register_module("fc1", torch::nn::Linear(E, 4 * E));
    layer.fc2 = m->register_module("fc2", torch::nn::Linear(4 * E, E));
    layers->push_back(m);
    layers_.push_back(layer);
  }
  final_norm_ = register_module("final_norm", ln());
}

CharEncoderImpl::Output CharEncoderImpl::forward(const torch::Tensor& tokens) {
  const int64_t L = options_.max_length(), E = options_.dim(), heads = options_.heads();
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) == L && tokens.scalar_type() == torch::kLong,
              "CharEncoder: tokens must be [B, ", L, "] int64, got ", tokens.sizes(), " ",
              tokens.scalar_type());
  const int64_t B = tokens.size(0);
  const auto start = torch::full({B, 1}, options_.alphabet() + 1, tokens.options());
  auto h = token_embedding_->forward(torch::cat({start, tokens}, 1)) +
           position_embedding_;  // [B, L + 1, E]
  for (auto& layer : layers_) {
    // h' = h + W_o attention(q, k, v), (q, k, v) = LN(h) W_in, split by head: [B, heads, L + 1, d]
    auto qkv = layer_forward(*layer.in_proj, layer.norm1->forward(h))
                   .view({B, L + 1, 3, heads, E / heads})
                   .permute({2, 0, 3, 1, 4});  // [3, B, heads, L + 1, d]
    auto a = attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape({B, L + 1, E});
    h = h + layer_forward(*layer.out_proj, a);
    h = h +
        layer_forward(*layer.fc2, gelu_tanh(layer_forward(*layer.fc1, layer.norm2->forward(h))));
  }
  auto context = final_norm_->forward(h);  // [B, L + 1, E]
  return {context, context.select(1, 0)};  // pooled: the start token's row [B, E]
}

void CharEncoderImpl::reset_parameters(Rng& rng) {
  torch::NoGradGuard no_grad;
  auto normal = [&rng](torch::Tensor& p) { p.copy_(rng.randn(p.sizes().vec()) * 0.02); };
  normal(token_embedding_->weight);
  normal(position_embedding_);
  auto reset_norm = [](torch::nn::LayerNorm& n) {
    n->weight.fill_(1.0);
    n->bias.zero_();
  };
  for (auto& layer : layers_) {
    reset_norm(layer.norm1);
    reset_norm(layer.norm2);
    for (auto* lin : {&layer.in_proj, &layer.out_proj, &layer.fc1, &layer.fc2})
      init_layer_uniform((*lin)->weight, (*lin)->bias, rng);
  }
  reset_norm(final_norm_);
}

}  // namespace ramflow
