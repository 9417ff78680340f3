// The decoder stage: the contract of every registered decoder, the decoded reward's gradient
// against finite differences, and a toy latent task (the ring's latents behind a learned decoder,
// the reward in decoded space) post-trained with RAM and with DRaFT through the decoder.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"

#include "ramflow/decoded_reward.h"
#include "ramflow/decoder.h"
#include "ramflow/draft.h"
#include "ramflow/evaluator.h"
#include "ramflow/mlp_decoder.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/ram.h"
#include "ramflow/reward.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"
#include "ramflow/vae_decoder.h"

namespace ramflow {
namespace {

// One example per registered decoder: its spec and the shape of one latent. A newly registered
// decoder without one fails the contract below.
struct DecoderExample {
  nlohmann::json spec;
  std::vector<int64_t> latent_shape;
};
DecoderExample decoder_example(const std::string& name) {
  if (name == "identity") return {{{"type", "identity"}}, {1, 4, 4}};
  if (name == "mlp") return {MLPDecoderOptions(3, 5).hidden(8).to_json(), {3}};
  if (name == "vae")
    return {{{"type", "vae"},
             {"config", VAEDecoderOptions()
                            .latent_channels(4)
                            .block_out_channels({8, 16})
                            .layers_per_block(1)
                            .norm_num_groups(4)
                            .to_json()},
             {"dtype", "float32"}},
            {4, 3, 5}};
  return {nullptr, {}};
}

class DecoderContract : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderContract, ShapesSpecSeedAndFrozen) {
  const DecoderExample ex = decoder_example(GetParam());
  ASSERT_FALSE(ex.spec.is_null()) << "add an example spec for decoder '" << GetParam() << "'";
  auto decoder = make_decoder(ex.spec, 1);
  EXPECT_EQ(decoder->spec(), ex.spec);
  EXPECT_EQ(make_decoder(decoder->spec())->spec(), decoder->spec());
  std::vector<int64_t> shape = {6};
  shape.insert(shape.end(), ex.latent_shape.begin(), ex.latent_shape.end());
  auto z = Rng(2).randn(shape);
  const auto x = decoder->forward(z);
  std::vector<int64_t> expected = {6};
  const auto decoded = decoder->decoded_shape(ex.latent_shape);
  expected.insert(expected.end(), decoded.begin(), decoded.end());
  EXPECT_EQ(x.sizes().vec(), expected);
  EXPECT_TRUE(torch::equal(decode_samples(*decoder, z, 4), x.detach()));  // chunks change nothing
  for (const auto& p : decoder->parameters())
    EXPECT_FALSE(p.requires_grad());  // frozen in post-training
  // The weights are a function of the spec and the seed alone.
  auto again = make_decoder(ex.spec, 1), other = make_decoder(ex.spec, 2);
  EXPECT_TRUE(torch::equal(again->forward(z), x));
  if (!decoder->parameters().empty()) {
    EXPECT_FALSE(torch::equal(other->forward(z), x));
  }
  EXPECT_THROW(make_decoder({{"type", GetParam()}, {"no_such_field", 1}}), ConfigError);
}

INSTANTIATE_TEST_SUITE_P(AllDecoders, DecoderContract, ::testing::ValuesIn(decoders().names()));

TEST(Decoder, TheDecodedRewardsGradientMatchesFiniteDifferences) {
  auto decoder = make_decoder(MLPDecoderOptions(3, 2).hidden(16).to_json(), 4);
  decoder->to(torch::kDouble);
  auto reward = decoded_reward(
      decoder, make_reward({{"type", "bump"}, {"center", {0.5, -0.2}}, {"scale", 1.5}}, 2));
  EXPECT_TRUE(reward->differentiable());
  EXPECT_EQ(reward->spec()["type"], "decoded");
  const auto z = Rng(5).randn({4, 3}).to(torch::kDouble);
  // r(z) is the inner reward of the decoded samples.
  const auto inner = make_reward({{"type", "bump"}, {"center", {0.5, -0.2}}, {"scale", 1.5}}, 2);
  EXPECT_TRUE(torch::allclose(reward->score(z, {}), inner->score(decoder->forward(z), {})));
  // grad_z r = J_decode^T grad_x r, by autograd through the decoder; central differences in
  // float64.
  const auto g = reward_gradient(*reward, z);
  ASSERT_EQ(g.sizes(), z.sizes());
  const double h = 1e-6;
  for (int64_t j = 0; j < 3; ++j) {
    auto e = torch::zeros_like(z);
    e.select(1, j).fill_(h);
    const auto fd = (reward->score(z + e, {}) - reward->score(z - e, {})) / (2 * h);  // [4]
    EXPECT_LT((fd - g.select(1, j)).abs().max().item<double>(), 1e-7) << "coordinate " << j;
  }
  EXPECT_GT(g.abs().sum().item<double>(), 1e-3);
  // The identity decoder changes nothing.
  EXPECT_EQ(decoded_reward(make_decoder({{"type", "identity"}}), inner), inner);
}

// The toy latent task: the model samples the ring's latents z [2]; a learned decoder maps them to
// x = decode(z) [2]; the reward is a bump in decoded space around the decoded east mode.
struct LatentRing {
  TaskPtr task = make_task("ring");
  VelocityFieldPtr base =
      testing::pretrained(*make_task("ring"), MLPVelocityOptions(2).to_json(), 1500);
  DecoderPtr decoder = make_decoder(MLPDecoderOptions(2, 2).hidden(16).to_json(), 3);
  RewardPtr reward;  // in decoded space
  LatentRing() {
    const auto east = decode_samples(*decoder, torch::tensor({{4.0f, 0.0f}}))[0];
    reward = make_reward({{"type", "bump"},
                          {"center", {east[0].item<double>(), east[1].item<double>()}},
                          {"scale", 1.5}},
                         2);
  }
};

// Post-trains the latent model with `method` on the decoded reward; returns (reward before, after)
// of the evaluation in decoded space, and the exact optimum.
std::tuple<double, double, double> train_latent(const LatentRing& ring, MethodPtr method, double lr,
                                                int steps) {
  const double m = 3.0;
  Evaluator evaluator(ring.task, ring.reward, m, *ring.base, EvalOptions().samples(1000).pool(5000),
                      ring.decoder);
  const double before = evaluator.evaluate(*ring.base).reward_mean;
  auto policy = clone_velocity_field(*ring.base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  Trainer trainer(policy, frozen_copy(*ring.base), decoded_reward(ring.decoder, ring.reward),
                  std::move(method),
                  TrainerOptions().sample_shape({2}).group_size(32).lr(lr).seed(2));
  for (int i = 0; i < steps; ++i) EXPECT_TRUE(trainer.step().skipped.empty());
  const EvalResult after = evaluator.evaluate(trainer.policy());
  EXPECT_EQ(after.samples.sizes(), after.latents.sizes());
  EXPECT_FALSE(torch::equal(after.samples, after.latents));  // the evaluation saw decoded samples
  return {before, after.reward_mean, evaluator.target().reward_optimal};
}

TEST(Decoder, ALatentToyTaskTrainsWithRamThroughALearnedDecoder) {
  const LatentRing ring;
  const auto [before, after, optimum] =
      train_latent(ring, std::make_unique<RAM>(RAMOptions().multiplier(3.0)), 3e-3, 300);
  ASSERT_GT(optimum - before, 0.1);
  EXPECT_GT(after - before, 0.5 * (optimum - before))
      << before << " -> " << after << " (optimum " << optimum << ")";
}

TEST(Decoder, DraftDifferentiatesTheRewardThroughTheDecoder) {
  const LatentRing ring;
  const auto [before, after, optimum] =
      train_latent(ring, std::make_unique<DRaFT>(DRaFTOptions()), 1e-3, 150);
  EXPECT_GT(after - before, 0.2) << before << " -> " << after << " (optimum " << optimum << ")";
}

}  // namespace
}  // namespace ramflow
