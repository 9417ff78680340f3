// Evaluation graders (see include/ramflow/grader.h).
#include "ramflow/grader.h"

#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"

namespace ramflow {
namespace {

// Features of x in chunks of 1000 images on the module's device: [N, F] float64, CPU.
template <typename Features>
torch::Tensor chunked_features(const torch::Tensor& x, torch::Device device, Features features) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < x.size(0); i += 1000) {
    const int64_t n = std::min<int64_t>(1000, x.size(0) - i);
    parts.push_back(
        features(x.narrow(0, i, n).to(device, torch::kFloat)).to(torch::kCPU, torch::kDouble));
  }
  return torch::cat(parts);
}

class ClassifierGrader : public Grader {
 public:
  explicit ClassifierGrader(ImageClassifier classifier) : classifier_(std::move(classifier)) {
    classifier_->eval();
  }
  std::string rate_name() const override { return "accuracy"; }
  int64_t num_classes() const override { return classifier_->options().num_classes(); }
  std::vector<int64_t> image_shape() const override {
    const auto& o = classifier_->options();
    return {o.in_channels(), o.image_size(), o.image_size()};
  }
  torch::Tensor features(const torch::Tensor& x) const override {
    return chunked_features(x, device(),
                            [this](const torch::Tensor& c) { return classifier_->features(c); });
  }
  torch::Tensor correct(const torch::Tensor& x, const torch::Tensor& features,
                        const Condition& cond) const override {
    // The predictions from the same features (eval mode: no dropout), argmax of the logits.
    torch::NoGradGuard no_grad;
    const auto p = classifier_->parameters().front();
    auto pred = classifier_->logits(features.to(p.device(), p.scalar_type())).argmax(1).cpu();
    return pred.eq(labels_of(cond, x.size(0), "the evaluation classifier").cpu());  // [N]
  }

 private:
  torch::Device device() const { return classifier_->parameters().front().device(); }
  mutable ImageClassifier classifier_;  // a holder: forward() is not const, grading changes nothing
};

class ReaderGrader : public Grader {
 public:
  explicit ReaderGrader(CharReader reader) : reader_(std::move(reader)) { reader_->eval(); }
  std::string rate_name() const override { return "exact_match"; }
  std::vector<int64_t> image_shape() const override {
    return {1, reader_->options().height(), reader_->options().width()};  // grey images
  }
  torch::Tensor features(const torch::Tensor& x) const override {
    return chunked_features(x, device(),
                            [this](const torch::Tensor& c) { return reader_->features(c); });
  }
  torch::Tensor correct(const torch::Tensor& x, const torch::Tensor&,
                        const Condition& cond) const override {
    TORCH_CHECK(cond.size() == x.size(0), "the evaluation reader: ", x.size(0), " images with ",
                cond.size(), " conditions");
    torch::NoGradGuard no_grad;
    std::vector<std::string> words;
    for (int64_t i = 0; i < cond.size(); ++i) words.push_back(cond.text(i));
    return exact_matches(*reader_, x.to(device(), torch::kFloat), words);
  }

 private:
  torch::Device device() const { return reader_->parameters().front().device(); }
  mutable CharReader reader_;  // a holder: forward() is not const, grading changes nothing
};

}  // namespace

GraderPtr classifier_grader(ImageClassifier classifier) {
  return std::make_shared<ClassifierGrader>(std::move(classifier));
}

GraderPtr reader_grader(CharReader reader) {
  return std::make_shared<ReaderGrader>(std::move(reader));
}

GraderPtr load_grader(const std::string& path) {
  const nlohmann::json meta = read_checkpoint_meta(path);
  if (meta.contains("char_reader")) return reader_grader(load_char_reader(path));
  if (meta.contains("classifier")) return classifier_grader(load_classifier(path));
  throw InputError(path +
                   ": not an evaluation judge (neither a classifier nor a text reader file)");
}

}  // namespace ramflow
