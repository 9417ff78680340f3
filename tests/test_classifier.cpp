// Image classifiers (training, files) and the classifier reward.
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/classifier.h"
#include "ramflow/errors.h"
#include "ramflow/reward.h"
#include "ramflow/task.h"

namespace ramflow {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / ("ramflow_classifier_" + name)).string();
}

ClassifierOptions tiny(const std::string& arch) {
  return ClassifierOptions().arch(arch).image_size(8).num_classes(10);
}

// Trains on the tiny dataset (its 3 classes are separable by where the bright square is).
ImageClassifier trained(const std::string& arch, double* accuracy) {
  auto task =
      make_task("fashion", {{"data_dir", testing::tiny_image_dataset(temp_path("data"), 240, 60)}});
  auto train = task->training_split();
  auto test = *task->test_split();
  ImageClassifier m(tiny(arch));
  *accuracy = train_classifier(*m, train.x, train.cond.at("label"), test.x, test.cond.at("label"),
                               ClassifierTrainOptions().epochs(6).batch(32).lr(3e-3).seed(1));
  return m;
}

TEST(Classifier, BothArchitecturesLearnSeparableClasses) {
  for (const std::string arch : {"cnn", "resnet"}) {
    double acc = 0;
    auto m = trained(arch, &acc);
    EXPECT_GE(acc, 0.95) << arch;
    EXPECT_FALSE(m->is_training());
    Rng rng(0);
    auto x = rng.randn({2, 1, 8, 8});
    EXPECT_EQ(m->features(x).sizes(), (std::vector<int64_t>{2, 128}));
    torch::NoGradGuard g;
    EXPECT_TRUE(torch::allclose(m->forward(x),
                                m->logits(m->features(x))));  // eval mode: one pass serves both
  }
}

TEST(Classifier, FileRoundTripAndErrors) {
  double acc = 0;
  auto m = trained("cnn", &acc);
  const auto path = temp_path("clf.safetensors");
  save_classifier(path, *m, {{"test_accuracy", acc}});
  nlohmann::json meta;
  auto back = load_classifier(path, &meta);
  EXPECT_EQ(meta["test_accuracy"].get<double>(), acc);
  EXPECT_EQ(meta["classifier"]["arch"], "cnn");
  Rng rng(3);
  auto x = rng.randn({5, 1, 8, 8});
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(m->forward(x), back->forward(x)));  // BatchNorm statistics travel too
  EXPECT_THROW(load_classifier(temp_path("missing.safetensors")), IOError);
  EXPECT_THROW(ClassifierOptions::from_json({{"type", "classifier"}, {"arch", "vit"}}),
               ConfigError);
}

TEST(ClassifierReward, IsTheLogProbabilityOfTheRequestedClass) {
  double acc = 0;
  auto m = trained("cnn", &acc);
  const auto path = temp_path("judge.safetensors");
  save_classifier(path, *m);
  auto reward = make_reward({{"type", "classifier"}, {"checkpoint", path}}, 64);
  EXPECT_TRUE(reward->differentiable());
  auto task = make_task("fashion", {{"data_dir", temp_path("data")}});
  auto test = *task->test_split();
  auto x = test.x.narrow(0, 0, 9);
  const auto cond = test.cond.slice(0, 9);
  const auto c = cond.at("label");
  auto r = score_checked(*reward, x, cond);
  torch::Tensor logp;
  {
    torch::NoGradGuard g;
    logp = torch::log_softmax(m->forward(x), 1);
  }
  for (int64_t i = 0; i < 9; ++i)
    EXPECT_NEAR(r[i].item<double>(), logp[i][c[i].item<int64_t>()].item<double>(), 1e-5);
  EXPECT_LE(r.max().item<double>(), 0.0);
  // The right label scores above a wrong one on a trained judge.
  auto wrong = score_checked(*reward, x, Condition::classes((c + 1).remainder(3)));
  EXPECT_GT(r.mean().item<double>(), wrong.mean().item<double>() + 1.0);
  // Differentiable: the gradient of log p(c | x) is finite and not zero.
  auto grad = reward_gradient(*reward, x, cond);
  EXPECT_TRUE(torch::isfinite(grad).all().item<bool>());
  EXPECT_GT(grad.abs().sum().item<double>(), 0.0);
  // A fixed class overrides the condition; no condition and no class is an error naming the reward.
  auto fixed = make_reward({{"type", "classifier"}, {"checkpoint", path}, {"class", 1}}, 64);
  auto r1 = score_checked(*fixed, x);
  for (int64_t i = 0; i < 9; ++i)
    EXPECT_NEAR(r1[i].item<double>(), logp[i][1].item<double>(), 1e-5);
  EXPECT_THROW(score_checked(*reward, x), ConfigError);
  EXPECT_THROW(make_reward({{"type", "classifier"}, {"checkpoint", path}, {"class", 10}}, 64),
               ConfigError);
  EXPECT_THROW(
      make_reward({{"type", "classifier"}, {"checkpoint", temp_path("nope.safetensors")}}, 64),
      InputError);
}

}  // namespace
}  // namespace ramflow
