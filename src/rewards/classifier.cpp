// The classifier reward: the log-probability that a learned judge assigns to the requested class.
//   r(x, c) = log softmax(f(x))_c,   f = an ImageClassifier (classifier.h), c = the sample's
//   condition
// (or the spec's fixed "class"). It plays GenEval's role for the fashion task: "does the image show
// what was asked for". Differentiable (through the classifier, in eval mode), at most 0. Spec:
// {"type": "classifier", "checkpoint": a path or a shipped file's name
//        (default "fashion_classifier.safetensors"), "class": K (optional: one class for every
//        sample)}.
#include <mutex>

#include <torch/torch.h>

#include "ramflow/assets.h"
#include "ramflow/classifier.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/reward.h"

namespace ramflow {
namespace {

class ClassifierReward : public Reward {
 public:
  ClassifierReward(std::string checkpoint, int64_t fixed_class)
      : checkpoint_(std::move(checkpoint)), fixed_class_(fixed_class) {
    model_ = load_classifier(resolve_model_file(checkpoint_));
    for (auto& p : model_->parameters()) p.set_requires_grad(false);
    const int64_t K = model_->options().num_classes();
    if (fixed_class_ >= K)
      throw ConfigError("reward 'classifier': class " + std::to_string(fixed_class_) +
                        " is outside the judge's " + std::to_string(K) + " classes");
  }
  torch::Tensor score(const torch::Tensor& x0, const Condition& cond) const override {
    const int64_t B = x0.size(0);
    torch::Tensor c;
    if (fixed_class_ >= 0) {
      c = torch::full({B}, fixed_class_,
                      torch::TensorOptions().dtype(torch::kLong).device(x0.device()));
    } else {
      if (!cond.defined())
        throw ConfigError(
            "reward 'classifier' scores the requested class: the samples have no condition "
            "(use a conditional task, or give the reward a fixed \"class\")");
      c = labels_of(cond, B, "reward 'classifier'").to(x0.device());  // [B]
      const int64_t lo = c.min().item<int64_t>(), hi = c.max().item<int64_t>();
      if (lo < 0 || hi >= model_->options().num_classes())
        throw ConfigError("reward 'classifier': condition labels must be classes in [0, " +
                          std::to_string(model_->options().num_classes()) + "), got " +
                          std::to_string(lo < 0 ? lo : hi));
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // The judge follows the samples: their device, and their floating type (float64 for checks).
      const auto p = model_->parameters().front();
      if (p.device() != x0.device() || p.scalar_type() != x0.scalar_type())
        model_->to(x0.device(), x0.scalar_type());
    }
    auto logp = torch::log_softmax(model_->forward(x0), 1);  // [B, K]
    return logp.gather(1, c.unsqueeze(1)).squeeze(1);        // [B]
  }
  bool differentiable() const override { return true; }
  nlohmann::json spec() const override {
    nlohmann::json s = {{"type", "classifier"}, {"checkpoint", checkpoint_}};
    if (fixed_class_ >= 0) s["class"] = fixed_class_;
    return s;
  }

 private:
  std::string checkpoint_;
  int64_t fixed_class_;
  mutable ImageClassifier model_{nullptr};
  mutable std::mutex mutex_;
};

}  // namespace

RewardPtr make_classifier_reward(const nlohmann::json& spec, int64_t /*dim*/) {
  SpecReader r(spec, "reward 'classifier'");
  r.text("type");
  const std::string checkpoint = r.text("checkpoint", "fashion_classifier.safetensors");
  int64_t fixed_class = -1;
  if (r.has("class")) {
    const double k = r.number("class");
    if (k < 0 || k != std::floor(k))
      throw ConfigError("reward 'classifier': 'class' must be an integer >= 0");
    fixed_class = static_cast<int64_t>(k);
  }
  r.finish();
  return std::make_shared<ClassifierReward>(checkpoint, fixed_class);
}

}  // namespace ramflow
