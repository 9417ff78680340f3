// Model contract over every registered model, and the copies the trainers use (frozen, EMA).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/gaussian_mixture.h"
#include "ramflow/lora.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/text_mlp_velocity.h"
#include "ramflow/unet.h"
#include "ramflow/velocity_field.h"

namespace ramflow {
namespace {

// One example per registered model: its spec, the shape of one sample, and its number of classes
// (class-conditional models get labels) or its text embeddings' widths (text-conditioned models get
// a random context [B, 3, C] and pooled vector [B, P]). A newly registered model without one fails
// the tests below.
struct Example {
  nlohmann::json spec;
  std::vector<int64_t> shape = {2};
  int64_t classes = 0;
  int64_t context_dim = 0, pooled_dim = 0;
  // Layers that are reached but cannot change the output (an adapter on them trains nothing).
  std::vector<std::string> dead_layers = {};
  int64_t prompt_length = 0;  // character-token models (sd3_char): random letters A-Z and padding

  Condition conditions(int64_t B) const {
    if (classes > 0) return Condition::classes(torch::arange(B).remainder(classes));
    if (prompt_length > 0) {
      Rng rng(12);
      return Condition(torch::arange(B), {{"tokens", rng.uniform_int(27, {B, prompt_length})}});
    }
    if (context_dim == 0) return {};
    Rng rng(11);
    return Condition(torch::arange(B), {{"context", rng.randn({B, 3, context_dim})},
                                        {"pooled", rng.randn({B, pooled_dim})}});
  }
};
Example example(const std::string& name) {
  if (name == "mlp") return {MLPVelocityOptions(2).hidden(32).depth(2).to_json()};
  if (name == "exact_mixture")
    return {{{"type", "exact_mixture"}, {"mixture", GaussianMixture::ring().to_json()}}};
  if (name == "text_mlp")
    return {TextMLPVelocityOptions(2, 4, 5).hidden(32).depth(2).to_json(), {2}, 0, 4, 5};
  if (name == "unet")
    return {UNetOptions().image_size(8).mult({1, 2}).num_classes(3).to_json(), {1, 8, 8}, 3};
  if (name == "sd3")
    return {{{"type", "sd3"},
             {"config",
              {{"sample_size", 8},
               {"patch_size", 2},
               {"in_channels", 4},
               {"num_layers", 3},
               {"attention_head_dim", 4},
               {"num_attention_heads", 2},
               {"joint_attention_dim", 6},
               {"caption_projection_dim", 8},
               {"pooled_projection_dim", 5},
               {"out_channels", 4},
               {"pos_embed_max_size", 6},
               {"dual_attention_layers", {0}},
               {"qk_norm", "rms_norm"}}}},
            {4, 4, 6},
            0,
            6,
            5,
            // The last block's text queries only make text outputs, which it discards (as diffusers
            // does: it computes them all the same).
            {"transformer_blocks.2.attn.add_q_proj"}};
  if (name == "sd3_char") {
    Example ex{testing::tiny_sd3_char_spec(4), {1, 4, 8}};
    ex.prompt_length = 4;
    ex.dead_layers = {"transformer.transformer_blocks.1.attn.add_q_proj"};
    return ex;
  }
  if (name == "lora")
    return {{{"type", "lora"},
             {"base", example("unet").spec},
             {"rank", 2},
             {"alpha", 3.0},
             {"targets", {"conv1", "qkv"}}},
            {1, 8, 8},
            3};
  return {nullptr};
}
nlohmann::json example_spec(const std::string& name) { return example(name).spec; }

class ModelContract : public ::testing::TestWithParam<std::string> {};

// The Conv2d and Linear layers of a model (none is not an error here).
std::vector<std::string> lora_target_layers_or_empty(const torch::nn::Module& model) {
  try {
    return lora_target_layers(model, {"*"});
  } catch (const ConfigError&) {
    return {};
  }
}

TEST_P(ModelContract, ShapesCloneAndCheckpointRoundTrip) {
  const Example ex = example(GetParam());
  ASSERT_FALSE(ex.spec.is_null()) << "add an example spec for model '" << GetParam() << "'";
  auto model = make_velocity_field(ex.spec, 1);
  {
    // Perturbed, so that zero-initialised layers take part in the round trips below.
    torch::NoGradGuard g;
    Rng prng(5);
    for (auto& p : model->parameters()) p.add_(prng.randn(p.sizes()) * 0.05);
  }
  EXPECT_EQ(model->spec(), make_velocity_field(model->spec())->spec());
  Rng rng(4);
  std::vector<int64_t> shape = {9};
  shape.insert(shape.end(), ex.shape.begin(), ex.shape.end());
  auto x = rng.randn(shape);
  auto t = rng.rand({9});
  const Condition cond = ex.conditions(9);
  auto forward = [&](VelocityFieldImpl& m) { return m.forward(x, t, cond); };
  auto v = forward(*model);
  EXPECT_EQ(v.sizes(), x.sizes());
  EXPECT_EQ(v.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::isfinite(v).all().item<bool>());
  auto copy = clone_velocity_field(*model);
  EXPECT_TRUE(torch::equal(forward(*copy), v));
  const std::string path = ::testing::TempDir() + "model_" + GetParam() + ".safetensors";
  save_checkpoint(path, {{"m", model.get()}}, {{"step", 3}});
  nlohmann::json meta;
  auto loaded = load_checkpoint_model(path, "m", &meta);
  EXPECT_TRUE(torch::equal(forward(*loaded), v));
  EXPECT_EQ(meta["step"], 3);
}

// The initial weights are a function of the spec and the seed alone (torch's global generator,
// seeded differently in every process, would give two different draws here).
TEST_P(ModelContract, InitialisationIsAFunctionOfTheSeed) {
  auto spec = example_spec(GetParam());
  ASSERT_FALSE(spec.is_null());
  auto a = make_velocity_field(spec, 7), b = make_velocity_field(spec, 7),
       c = make_velocity_field(spec, 8);
  auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  bool differs = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    differs = differs || !torch::equal(pa[i], pc[i]);
  }
  EXPECT_EQ(differs, !pa.empty()) << "another seed must give other weights";
}

// Every Conv2d and Linear layer of a model is reached through layer_forward (lora_branch.h): LoRA
// on all of them ('*') runs, and with B perturbed away from zero each adapter changes the output. A
// model whose forward calls a layer directly fails here (its adapter would be ignored).
TEST_P(ModelContract, LoraReachesEveryAdaptableLayer) {
  const Example ex = example(GetParam());
  ASSERT_FALSE(ex.spec.is_null());
  auto model = make_velocity_field(ex.spec, 1);
  if (as_lora(*model) || lora_target_layers_or_empty(*model).empty())
    GTEST_SKIP() << "no adaptable layers";
  {
    // Perturbed, so that zero-initialised layers (an output layer) pass every layer's change on.
    torch::NoGradGuard g;
    Rng prng(5);
    for (auto& p : model->parameters()) p.add_(prng.randn(p.sizes()) * 0.05);
  }
  auto lora = LoraVelocityField(model, LoraOptions().rank(2).targets({"*"}));
  Rng rng(4);
  std::vector<int64_t> shape = {5};
  shape.insert(shape.end(), ex.shape.begin(), ex.shape.end());
  const auto x = rng.randn(shape), t = rng.rand({5});
  const Condition cond = ex.conditions(5);
  // Without gradients throughout, so that every forward takes the same kernels.
  torch::NoGradGuard no_grad;
  const auto v0 = model->forward(x, t, cond);
  EXPECT_TRUE(torch::equal(lora->forward(x, t, cond), v0));  // B = 0: the base exactly
  Rng brng(6);
  for (const auto& layer : lora->layers()) {
    // Random, not constant: a constant B gives every output channel the same shift, which a
    // normalisation over channels that follows (the U-Net's GroupNorm after emb_proj) removes.
    lora->lora_B(layer).copy_(brng.randn(lora->lora_B(layer).sizes()) * 0.1);
    const bool dead =
        std::find(ex.dead_layers.begin(), ex.dead_layers.end(), layer) != ex.dead_layers.end();
    EXPECT_EQ(torch::allclose(lora->forward(x, t, cond), v0), dead) << layer;
    lora->lora_B(layer).zero_();
  }
}

INSTANTIATE_TEST_SUITE_P(AllModels, ModelContract, ::testing::ValuesIn(models().names()));

TEST(ModelTest, MLPDefaultHasTheTutorialSize) {
  // Linear(18->128) + 2 x Linear(128->128) + Linear(128->2) = 2432 + 33024 + 258 = 35,714
  // parameters.
  auto mlp = MLPVelocity(MLPVelocityOptions(2));
  EXPECT_EQ(parameter_count(*mlp), 35714);
}

TEST(ModelTest, ConditionalMLPUsesItsLabels) {
  auto mlp = MLPVelocity(MLPVelocityOptions(2).num_classes(3));
  auto x = torch::zeros({2, 2});
  auto t = torch::full({2}, 0.5);
  auto v = mlp->forward(x, t, Condition::classes(torch::tensor({0, 2})));
  EXPECT_FALSE(torch::allclose(v[0], v[1]));
  EXPECT_THROW(mlp->forward(x, t), c10::Error);
}

TEST(ModelTest, FrozenCopyHasNoGradients) {
  auto mlp = MLPVelocity(MLPVelocityOptions(2).hidden(8));
  auto ref = frozen_copy(*mlp);
  for (const auto& p : ref->parameters()) EXPECT_FALSE(p.requires_grad());
  EXPECT_FALSE(ref->is_training());
  // Training the original leaves the copy unchanged.
  torch::NoGradGuard g;
  mlp->parameters()[0].add_(1.0);
  EXPECT_FALSE(torch::equal(mlp->parameters()[0], ref->parameters()[0]));
}

TEST(ModelTest, EMAFollowsTheRampAndTheDecay) {
  auto mlp = MLPVelocity(MLPVelocityOptions(1).hidden(4).depth(1));
  EMA ema(*mlp, /*decay=*/0.9, /*ramp=*/0.5);
  auto p = [](VelocityFieldImpl& m) { return m.parameters()[0].detach().clone(); };
  auto p0 = p(*mlp);
  EXPECT_DOUBLE_EQ(ema.next_decay(), 0.0);  // first update copies
  {
    torch::NoGradGuard g;
    mlp->parameters()[0].add_(1.0);
  }
  ema.update(*mlp);
  EXPECT_TRUE(torch::allclose(p(ema.model()), p0 + 1.0));
  EXPECT_DOUBLE_EQ(ema.next_decay(), 0.5);  // min(0.9, 0.5 * 1)
  {
    torch::NoGradGuard g;
    mlp->parameters()[0].add_(1.0);
  }
  ema.update(*mlp);  // 0.5 (p0 + 1) + 0.5 (p0 + 2)
  EXPECT_TRUE(torch::allclose(p(ema.model()), p0 + 1.5));
  EXPECT_DOUBLE_EQ(ema.next_decay(), 0.9);  // capped
}

}  // namespace
}  // namespace ramflow
