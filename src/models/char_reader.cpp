// The text recogniser of the words task (see include/ramflow/char_reader.h).
#include "ramflow/char_reader.h"

#include <array>

#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/init.h"

namespace ramflow {

nlohmann::json CharReaderOptions::to_json() const {
  return {{"type", "char_reader"}, {"height", height_},     {"width", width_},
          {"alphabet", alphabet_}, {"channels", channels_}, {"features", features_}};
}

CharReaderOptions CharReaderOptions::from_json(const nlohmann::json& spec) {
  SpecReader r(spec, "char_reader");
  r.text("type", "char_reader");
  CharReaderOptions o;
  o.height(r.integer("height", o.height(), 8, 4096))
      .width(r.integer("width", o.width(), 2, 65536))
      .alphabet(r.integer("alphabet", o.alphabet(), 1, 26))
      .channels(r.integer("channels", o.channels(), 1, 4096))
      .features(r.integer("features", o.features(), 1, 4096));
  r.finish();
  if (o.height() % 8 != 0 || o.width() % 2 != 0)
    throw ConfigError("char_reader: height must be a multiple of 8 and width even, got " +
                      std::to_string(o.height()) + " x " + std::to_string(o.width()));
  return o;
}

CharReaderImpl::CharReaderImpl(const CharReaderOptions& options) : options_(options) {
  const int64_t C = options_.channels(), F = options_.features();
  using torch::nn::Conv2dOptions;
  // (in, out, stride in height, stride in width): H -> H/8, W -> W/2.
  const std::vector<std::array<int64_t, 4>> plan = {
      {1, 32, 1, 1}, {32, C, 2, 2}, {C, C, 1, 1}, {C, C, 2, 1}, {C, C, 2, 1}};
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& [in, out, sh, sw] = plan[i];
    convs_.push_back(
        register_module("conv" + std::to_string(i),
                        torch::nn::Conv2d(Conv2dOptions(in, out, 3).stride({sh, sw}).padding(1))));
    norms_.push_back(register_module(
        "norm" + std::to_string(i),
        torch::nn::GroupNorm(torch::nn::GroupNormOptions(std::min<int64_t>(8, out), out))));
  }
  rows_ = register_module("rows", torch::nn::Linear(C * (options_.height() / 8), F));
  mix_ = register_module("mix", torch::nn::Conv1d(torch::nn::Conv1dOptions(F, F, 5).padding(2)));
  out_ = register_module("out", torch::nn::Linear(F, options_.alphabet() + 1));
}

torch::Tensor CharReaderImpl::columns(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 1 && x.size(2) == options_.height() &&
                  x.size(3) == options_.width(),
              "CharReader: x must be [B, 1, ", options_.height(), ", ", options_.width(), "], got ",
              x.sizes());
  auto h = x;
  for (size_t i = 0; i < convs_.size(); ++i)  // conv, GroupNorm, ReLU: -> [B, C, H/8, W/2]
    h = torch::relu(norms_[i]->forward(convs_[i]->forward(h)));
  const int64_t B = h.size(0), T = h.size(3);
  h = h.permute({0, 3, 1, 2}).reshape({B, T, -1});  // [B, T, C H/8]: a column's rows stacked
  h = torch::relu(rows_->forward(h));               // [B, T, F]
  return torch::relu(mix_->forward(h.transpose(1, 2))).transpose(1, 2);  // [B, T, F]
}

torch::Tensor CharReaderImpl::forward(const torch::Tensor& x) {
  return torch::log_softmax(out_->forward(columns(x)), -1);  // [B, T, alphabet + 1]
}

torch::Tensor CharReaderImpl::features(const torch::Tensor& x) { return columns(x).mean(1); }

torch::Tensor CharReaderImpl::loss(const torch::Tensor& x, const torch::Tensor& tokens) {
  const auto log_probs = forward(x).transpose(0, 1);  // [T, B, K], as CTC takes them
  const int64_t B = x.size(0), T = log_probs.size(0);
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == B, "CharReader: tokens must be [", B,
              ", L], got ", tokens.sizes());
  const auto input_lengths = torch::full({B}, T, torch::kLong);
  const auto target_lengths = tokens.gt(0).sum(1).to(torch::kLong);  // letters per word
  // blank = 0 (the padding id: never a target); mean over the batch of the loss per letter;
  // infinite losses (a word longer than the columns can spell) count as 0.
  return torch::ctc_loss(log_probs, tokens.to(log_probs.device()),
                         input_lengths.to(log_probs.device()),
                         target_lengths.to(log_probs.device()), /*blank=*/0, at::Reduction::Mean,
                         /*zero_infinity=*/true);
}

std::vector<std::string> CharReaderImpl::read(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const auto best = forward(x).argmax(-1).cpu().contiguous();  // [B, T]
  const auto a = best.accessor<int64_t, 2>();
  std::vector<std::string> words;
  for (int64_t b = 0; b < best.size(0); ++b) {
    std::string w;
    int64_t previous = 0;
    for (int64_t t = 0; t < best.size(1); ++t) {
      const int64_t k = a[b][t];
      if (k != 0 && k != previous) w += static_cast<char>('A' + k - 1);
      previous = k;
    }
    words.push_back(w);
  }
  return words;
}

void save_char_reader(const std::string& path, const CharReaderImpl& reader,
                      const nlohmann::json& meta) {
  save_module_file(path, reader, "char_reader", reader.options().to_json(), meta);
}

CharReader load_char_reader(const std::string& path, nlohmann::json* meta) {
  const ModuleFile file = read_module_file(path, "char_reader", "text reader");
  CharReader reader(CharReaderOptions::from_json(file.info["char_reader"]));
  load_module_tensors(file, *reader, path);
  reader->eval();
  if (meta) *meta = file.info;
  return reader;
}

void CharReaderImpl::reset_parameters(Rng& rng) {
  torch::NoGradGuard no_grad;
  for (auto& conv : convs_) init_layer_uniform(conv->weight, conv->bias, rng);
  for (auto& norm : norms_) {
    norm->weight.fill_(1.0);
    norm->bias.zero_();
  }
  init_layer_uniform(rows_->weight, rows_->bias, rng);
  init_layer_uniform(mix_->weight, mix_->bias, rng);
  init_layer_uniform(out_->weight, out_->bias, rng);
}

}  // namespace ramflow
