// Reward contract over every registered reward, plus known values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/classifier.h"
#include "ramflow/errors.h"
#include "ramflow/reward.h"
#include "ramflow/rng.h"

namespace ramflow {
namespace {

// One example per registered reward: its spec and the shape of one sample (points [2] unless the
// reward scores images). A newly registered reward without one fails the test below, so every
// reward gets the contract.
struct Example {
  nlohmann::json spec;
  std::vector<int64_t> shape = {2};
};
Example example(const std::string& name) {
  if (name == "linear") return {{{"type", "linear"}, {"coef", {0.5, -1.0}}}};
  if (name == "quadratic")
    return {{{"type", "quadratic"}, {"center", {1.0, 2.0}}, {"q", {0.5, 2.0}}}};
  if (name == "bump")
    return {{{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}, {"height", 1.5}}};
  if (name == "brightness") return {{{"type", "brightness"}}};
  if (name == "jpeg-compressibility" || name == "jpeg-incompressibility")
    return {{{"type", name}, {"quality", 80}}, {1, 16, 16}};
  if (name == "ocr") return {{{"type", "ocr"}, {"text", "CAT"}}, {1, 24, 96}};
  if (name == "classifier") {
    // A judge with random weights (the contract is about shapes, round trips and gradients).
    const std::string path = ::testing::TempDir() + "contract_judge.safetensors";
    ImageClassifier judge(ClassifierOptions().image_size(8).num_classes(4));
    save_classifier(path, *judge);
    return {{{"type", "classifier"}, {"checkpoint", path}, {"class", 2}}, {1, 8, 8}};
  }
  if (name == "sum")
    return {{{"type", "sum"},
             {"terms",
              {{{"type", "linear"}, {"coef", {1.0, 1.0}}, {"weight", 2.0}},
               {{"type", "bump"}, {"center", {0.0, 0.0}}, {"weight", -0.5}}}}}};
  if (name == "remote") {
    // The example server's bump, over loopback (tests/test_remote_reward.cpp holds the client's
    // tests).
    static testing::Server server(
        {testing::source("examples/reward_server.py"), "--port", "0", "--center", "1,1"});
    return {{{"type", "remote"}, {"url", server.url()}}};
  }
  return {nullptr};
}

class RewardContract : public ::testing::TestWithParam<std::string> {};

TEST_P(RewardContract, ShapeFinitenessRoundTripAndGradients) {
  const Example ex = example(GetParam());
  ASSERT_FALSE(ex.spec.is_null()) << "add an example spec for reward '" << GetParam() << "'";
  int64_t dim = 1;
  for (int64_t n : ex.shape) dim *= n;
  auto reward = make_reward(ex.spec, dim);
  Rng rng(2);
  std::vector<int64_t> batch_shape = {64};
  batch_shape.insert(batch_shape.end(), ex.shape.begin(), ex.shape.end());
  auto x = 3.0 * rng.randn(batch_shape, torch::TensorOptions().dtype(torch::kDouble));  // [64, ...]
  auto r = reward->score(x);
  ASSERT_EQ(r.sizes(), torch::IntArrayRef({64}));
  EXPECT_TRUE(torch::isfinite(r).all().item<bool>());
  // The spec rebuilds the same reward.
  auto again = make_reward(reward->spec(), dim);
  EXPECT_TRUE(torch::allclose(again->score(x), r, 1e-12, 1e-12));
  // A quadratic form, when claimed, reproduces the scores (on the flattened samples).
  const auto flat = x.reshape({64, dim});
  if (auto f = reward->quadratic_form()) {
    auto q = -0.5 * (torch::matmul(flat, f->Q) * flat).sum(1) + torch::mv(flat, f->b) + f->c;
    EXPECT_TRUE(torch::allclose(q, r, 1e-9, 1e-9));
  }
  // Differentiable rewards: autograd matches central finite differences (first two coordinates).
  if (reward->differentiable()) {
    auto xg = x.clone().requires_grad_(true);
    auto g = torch::autograd::grad({reward->score(xg).sum()}, {xg}, {}, false, false)[0].reshape(
        {64, dim});
    const double h = 1e-6;
    for (int64_t d = 0; d < 2; ++d) {
      auto e = torch::zeros_like(flat);
      e.select(1, d).fill_(h);
      auto fd =
          (reward->score((flat + e).view(x.sizes())) - reward->score((flat - e).view(x.sizes()))) /
          (2 * h);
      EXPECT_TRUE(torch::allclose(g.select(1, d), fd, 1e-5, 1e-6)) << GetParam() << " dim " << d;
    }
  }
  // score_checked returns float32 [B].
  EXPECT_EQ(score_checked(*reward, x.to(torch::kFloat)).scalar_type(), torch::kFloat);
}

INSTANTIATE_TEST_SUITE_P(AllRewards, RewardContract, ::testing::ValuesIn(rewards().names()));

TEST(RewardTest, KnownValues) {
  auto x = torch::tensor({{4.0, 0.0}, {4.0, 2.5}}, torch::kDouble);
  auto bump = make_reward({{"type", "bump"}, {"center", {4, 0}}, {"scale", 2.5}}, 2);
  auto r = bump->score(x);
  EXPECT_DOUBLE_EQ(r[0].item<double>(), 1.0);
  EXPECT_NEAR(r[1].item<double>(), std::exp(-0.5), 1e-12);
  auto quad = make_reward({{"type", "quadratic"}, {"center", {4, 0}}, {"q", 2.0}}, 2);
  EXPECT_NEAR(quad->score(x)[1].item<double>(), -0.5 * 2.0 * 6.25, 1e-12);
  EXPECT_FALSE(bump->quadratic_form().has_value());
}

// brightness = the mean coordinate: on images [B, 1, 28, 28] the mean intensity, on points the
// linear reward with coefficients 1/D, quadratic form included.
TEST(RewardTest, BrightnessIsTheMeanCoordinate) {
  torch::manual_seed(0);  // values only; the assertions hold for any
  auto images = torch::rand({3, 1, 28, 28}, torch::kDouble) * 2 - 1;
  auto bright = make_reward({{"type", "brightness"}}, 28 * 28);
  EXPECT_TRUE(torch::allclose(bright->score(images), images.view({3, -1}).mean(1), 1e-12, 1e-14));
  auto g = reward_gradient(*bright, images);
  EXPECT_TRUE(torch::allclose(g, torch::full_like(images, 1.0 / 784), 1e-12, 1e-15));
  auto points = torch::randn({5, 2}, torch::kDouble);
  auto as_linear = make_reward({{"type", "linear"}, {"coef", {0.5, 0.5}}}, 2);
  auto bright2 = make_reward({{"type", "brightness"}}, 2);
  EXPECT_TRUE(torch::allclose(bright2->score(points), as_linear->score(points), 1e-12, 1e-14));
  const auto qb = bright2->quadratic_form(), ql = as_linear->quadratic_form();
  ASSERT_TRUE(qb && ql);
  EXPECT_TRUE(torch::allclose(qb->b, ql->b) && torch::allclose(qb->Q, ql->Q));
  EXPECT_THROW(make_reward({{"type", "brightness"}, {"scale", 2}}, 2), ConfigError);
}

// JPEG sizes: a flat image compresses far better than noise, the two rewards are each other's
// negative, the score is deterministic, and a lower quality gives smaller files.
TEST(RewardTest, JpegSizeRewardsOrderFlatBelowNoisyImages) {
  auto comp = make_reward({{"type", "jpeg-compressibility"}}, 3 * 32 * 32);
  auto incomp = make_reward({{"type", "jpeg-incompressibility"}}, 3 * 32 * 32);
  Rng rng(1);
  auto images = torch::cat(
      {torch::zeros({1, 3, 32, 32}), rng.randn({1, 3, 32, 32}).clamp(-1, 1)});  // flat, noise
  const auto r = comp->score(images), s = incomp->score(images);
  EXPECT_GT(r[0].item<float>(), r[1].item<float>());  // the flat image is the more compressible
  EXPECT_TRUE(torch::equal(r, -s));
  EXPECT_TRUE(torch::equal(comp->score(images), r));
  EXPECT_LT(r[0].item<float>(), 0.0f);
  auto coarse = make_reward({{"type", "jpeg-incompressibility"}, {"quality", 20}}, 3 * 32 * 32);
  EXPECT_LT(coarse->score(images)[1].item<float>(), s[1].item<float>());
  EXPECT_FALSE(comp->differentiable());
  EXPECT_THROW(make_reward({{"type", "jpeg-compressibility"}, {"quality", 0}}, 4), ConfigError);
  EXPECT_THROW(comp->score(torch::zeros({2, 5})), c10::Error);  // not images
}

TEST(RewardTest, BadSpecsNameTheField) {
  auto msg = [](const nlohmann::json& spec) {
    try {
      make_reward(spec, 2);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg({{"type", "bump"}, {"center", {1, 2, 3}}}).find("'center' has 3 entries"),
            std::string::npos);
  EXPECT_NE(msg({{"type", "bump"}, {"center", {1, 2}}, {"scale", 0}}).find("'scale' must be > 0"),
            std::string::npos);
  EXPECT_NE(msg({{"type", "linear"}}).find("missing field 'coef'"), std::string::npos);
  EXPECT_NE(msg({{"type", "nope"}}).find("unknown reward 'nope'"), std::string::npos);
  EXPECT_NE(msg({{"type", "quadratic"}, {"q", {{1, 2}, {0, 1}}}}).find("symmetric"),
            std::string::npos);
}

TEST(RewardTest, NonFiniteScoresAreCaught) {
  auto lin = make_reward({{"type", "linear"}, {"coef", {1, 0}}}, 2);
  auto x = torch::tensor({{1.0f, 0.0f}, {std::nanf(""), 0.0f}});
  try {
    score_checked(*lin, x);
    FAIL() << "expected NumericalError";
  } catch (const NumericalError& e) {
    EXPECT_NE(std::string(e.what()).find("sample 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ramflow
