// Image classifiers (see include/ramflow/classifier.h).
#include "ramflow/classifier.h"

#include <chrono>
#include <cmath>

#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/init.h"

namespace ramflow {

nlohmann::json ClassifierOptions::to_json() const {
  return {{"type", "classifier"},
          {"arch", arch_},
          {"in_channels", in_channels_},
          {"image_size", image_size_},
          {"num_classes", num_classes_}};
}

ClassifierOptions ClassifierOptions::from_json(const nlohmann::json& spec) {
  SpecReader r(spec, "classifier");
  r.text("type", "classifier");
  ClassifierOptions o;
  o.arch(r.text("arch", "cnn"));
  auto integer = [&](const std::string& key, double def) {
    const double v = r.number(key, def);
    if (v < 1 || v != std::floor(v) || v > 1e6)
      throw ConfigError("classifier: field '" + key + "' must be a positive integer");
    return static_cast<int64_t>(v);
  };
  o.in_channels(integer("in_channels", 1))
      .image_size(integer("image_size", 28))
      .num_classes(integer("num_classes", 10));
  r.finish();
  if (o.arch() != "cnn" && o.arch() != "resnet")
    throw ConfigError("classifier: arch must be 'cnn' or 'resnet', got '" + o.arch() + "'");
  if (o.image_size() % 4 != 0) throw ConfigError("classifier: image_size must be divisible by 4");
  if (o.num_classes() < 2) throw ConfigError("classifier: num_classes must be at least 2");
  return o;
}

namespace {
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2));
}
torch::nn::GroupNorm gn(int64_t width) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(8, width));
}
}  // namespace

ImageClassifierImpl::ImageClassifierImpl(const ClassifierOptions& options)
    : options_(ClassifierOptions::from_json(options.to_json())) {
  const int64_t C = options_.in_channels(), S = options_.image_size(), K = options_.num_classes();
  if (options_.arch() == "cnn") {
    conv1 = register_module("conv1", conv(C, 16, 3));
    conv2 = register_module("conv2", conv(16, 32, 3));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(32));
    conv3 = register_module("conv3", conv(32, 64, 3));
    bn3 = register_module("bn3", torch::nn::BatchNorm2d(64));
    conv4 = register_module("conv4", conv(64, 64, 3));
    bn4 = register_module("bn4", torch::nn::BatchNorm2d(64));
    fc1 = register_module("fc1", torch::nn::Linear(64 * (S / 4) * (S / 4), kFeatures));
  } else {
    conv1 = register_module("conv1", conv(C, 32, 5));
    gn1 = register_module("gn1", gn(32));
    conv2 = register_module("conv2", conv(32, 32, 3));
    gn2 = register_module("gn2", gn(32));
    conv3 = register_module("conv3", conv(32, 32, 3));
    gn3 = register_module("gn3", gn(32));
    conv4 = register_module("conv4", conv(32, 64, 3, 2));
    gn4 = register_module("gn4", gn(64));
    conv5 = register_module("conv5", conv(64, 64, 3));
    gn5 = register_module("gn5", gn(64));
    conv6 = register_module("conv6", conv(64, 64, 3));
    gn6 = register_module("gn6", gn(64));
    fc1 = register_module("fc1", torch::nn::Linear(64, kFeatures));
  }
  fc2 = register_module("fc2", torch::nn::Linear(kFeatures, K));
  Rng rng(0);
  reset_parameters(rng);
}

void ImageClassifierImpl::reset_parameters(Rng& rng) {
  torch::NoGradGuard no_grad;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    auto* m = item.value().get();
    if (auto* c = dynamic_cast<torch::nn::Conv2dImpl*>(m)) {
      init_layer_uniform(c->weight, c->bias, rng);
    } else if (auto* l = dynamic_cast<torch::nn::LinearImpl*>(m)) {
      init_layer_uniform(l->weight, l->bias, rng);
    }
  }
}

torch::Tensor ImageClassifierImpl::features(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels() &&
                  x.size(2) == options_.image_size() && x.size(3) == options_.image_size(),
              "classifier: images must be [B, ", options_.in_channels(), ", ",
              options_.image_size(), ", ", options_.image_size(), "], got ", x.sizes());
  namespace F = torch::nn::functional;
  if (options_.arch() == "cnn") {
    auto h = torch::relu(conv1(x));                                             // [B, 16, S, S]
    h = F::max_pool2d(torch::relu(bn2(conv2(h))), F::MaxPool2dFuncOptions(2));  // [B, 32, S/2, S/2]
    h = F::max_pool2d(torch::relu(bn3(conv3(h))), F::MaxPool2dFuncOptions(2));  // [B, 64, S/4, S/4]
    h = torch::relu(bn4(conv4(h)));                                             // [B, 64, S/4, S/4]
    return torch::relu(fc1(h.flatten(1)));                                      // [B, 128]
  }
  auto h =
      F::avg_pool2d(torch::silu(gn1(conv1(x))), F::AvgPool2dFuncOptions(2));  // [B, 32, S/2, S/2]
  h = h + torch::silu(gn3(conv3(torch::silu(gn2(conv2(h))))));  // residual block at 32
  h = torch::silu(gn4(conv4(h)));                               // [B, 64, S/4, S/4]
  h = h + torch::silu(gn6(conv6(torch::silu(gn5(conv5(h))))));  // residual block at 64
  return torch::silu(fc1(h.mean({2, 3})));                      // [B, 128]
}

torch::Tensor ImageClassifierImpl::forward(const torch::Tensor& x) {
  auto f = features(x);
  if (options_.arch() == "cnn") f = torch::dropout(f, 0.3, is_training());
  return fc2(f);  // [B, K]
}

double classifier_accuracy(ImageClassifierImpl& model, const torch::Tensor& x,
                           const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.parameters().front().device();
  int64_t correct = 0;
  for (int64_t i = 0; i < x.size(0); i += 1000) {
    const int64_t n = std::min<int64_t>(1000, x.size(0) - i);
    auto pred = model.forward(x.narrow(0, i, n).to(device)).argmax(1).cpu();
    correct += pred.eq(labels.narrow(0, i, n).cpu()).sum().item<int64_t>();
  }
  model.train(was_training);
  return static_cast<double>(correct) / static_cast<double>(x.size(0));
}

double train_classifier(ImageClassifierImpl& model, const torch::Tensor& x,
                        const torch::Tensor& labels, const torch::Tensor& test_x,
                        const torch::Tensor& test_labels, const ClassifierTrainOptions& options,
                        const std::function<void(const ClassifierEpoch&)>& on_progress) {
  TORCH_CHECK(x.size(0) == labels.size(0) && test_x.size(0) == test_labels.size(0),
              "train_classifier: images and labels differ in number");
  if (options.epochs() < 1 || options.batch() < 1 || !(options.lr() > 0))
    throw ConfigError("train_classifier: epochs, batch and lr must be positive");
  const auto device = model.parameters().front().device();
  torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(options.lr()));
  Rng rng(options.seed());
  const int64_t N = x.size(0), batches = (N + options.batch() - 1) / options.batch();
  const auto start = std::chrono::steady_clock::now();
  double accuracy = 0;
  for (int64_t epoch = 1; epoch <= options.epochs(); ++epoch) {
    model.train();
    // A fresh permutation per epoch: argsort of uniform draws from the seeded stream.
    auto perm = rng.rand({N}).argsort();
    double loss_sum = 0;
    ClassifierEpoch rec;
    rec.epoch = epoch;
    rec.total_batches = batches;
    for (int64_t b = 0; b < batches; ++b) {
      auto idx =
          perm.narrow(0, b * options.batch(), std::min(options.batch(), N - b * options.batch()));
      auto logits = model.forward(x.index_select(0, idx).to(device));
      auto loss = torch::cross_entropy_loss(logits, labels.index_select(0, idx).to(device));
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
      rec.batches = b + 1;
      rec.loss = loss_sum / static_cast<double>(b + 1);
      rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (on_progress) on_progress(rec);
    }
    accuracy = classifier_accuracy(model, test_x, test_labels);
    rec.test_accuracy = accuracy;
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_progress) on_progress(rec);
  }
  model.eval();
  return accuracy;
}

void save_classifier(const std::string& path, const ImageClassifierImpl& model,
                     const nlohmann::json& meta) {
  save_module_file(path, model, "classifier", model.options().to_json(), meta);
}

ImageClassifier load_classifier(const std::string& path, nlohmann::json* meta) {
  const ModuleFile file = read_module_file(path, "classifier", "classifier");
  ImageClassifier model(ClassifierOptions::from_json(file.info["classifier"]));
  load_module_tensors(file, *model, path);
  model->eval();
  if (meta) *meta = file.info;
  return model;
}

}  // namespace ramflow
