// LoRA adapters: exact identities (fresh adapters, adapters off), merging, PEFT's layout, layer
// patterns, and a Trainer that trains the adapters alone for every registered method.
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/checkpoint.h"
#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/lora.h"
#include "ramflow/method.h"
#include "ramflow/reward.h"
#include "ramflow/trainer.h"
#include "ramflow/unet.h"

namespace ramflow {
namespace {

UNetOptions small() { return UNetOptions().image_size(8).channels(16).mult({1, 2}).num_classes(3); }

// A base with every weight perturbed (the zero-initialised layers too), so that outputs depend on
// all.
VelocityFieldPtr base_model(uint64_t seed = 2) {
  auto m = make_velocity_field(small().to_json(), 1);
  torch::NoGradGuard g;
  Rng rng(seed);
  for (auto& p : m->parameters()) p.add_(rng.randn(p.sizes()) * 0.1);
  return m;
}

// Random B (and A), as after training.
void train_adapters(LoraVelocityFieldImpl& lora, uint64_t seed) {
  torch::NoGradGuard g;
  Rng rng(seed);
  for (const auto& layer : lora.layers()) {
    lora.lora_A(layer).add_(rng.randn(lora.lora_A(layer).sizes()) * 0.1);
    lora.lora_B(layer).copy_(rng.randn(lora.lora_B(layer).sizes()) * 0.1);
  }
}

struct Inputs {
  torch::Tensor x, t;
  Condition cond;
};
Inputs inputs() {
  Rng rng(9);
  return {rng.randn({6, 1, 8, 8}), rng.rand({6}),
          Condition::classes(torch::tensor(std::vector<int64_t>{0, 1, 2, -1, 0, 1}))};
}
torch::Tensor velocity(VelocityFieldImpl& m, const Inputs& in) {
  return m.forward(in.x, in.t, in.cond);
}

TEST(Lora, FreshAdaptersGiveTheBaseExactly) {
  auto base = base_model();
  const auto in = inputs();
  const auto v_base = velocity(*base, in);
  LoraVelocityField lora(base, LoraOptions().rank(2).alpha(3));
  EXPECT_TRUE(torch::equal(velocity(*lora, in), v_base));  // B = 0: W0 + 0 = W0 in floating point
  // Only the adapters train; the base is frozen.
  for (const auto& kv : lora->named_parameters())
    EXPECT_EQ(kv.value().requires_grad(), kv.key().rfind("lora.", 0) == 0) << kv.key();
}

TEST(Lora, AdaptersOffAreTheBaseExactlyAndTheBaseIsRestored) {
  auto base = base_model();
  const auto in = inputs();
  const auto v_base = velocity(*base, in);
  LoraVelocityField lora(base, LoraOptions().rank(2));
  train_adapters(*lora, 3);
  const auto v_lora = velocity(*lora, in);
  EXPECT_GT((v_lora - v_base).abs().max().item<double>(), 1e-3);  // the adapters change the output
  // After an adapted call, the base (= the reference) computes with W0 again, bit for bit.
  EXPECT_TRUE(torch::equal(velocity(*base, in), v_base));
  lora->set_enabled(false);
  EXPECT_TRUE(torch::equal(velocity(*lora, in), v_base));
  lora->set_enabled(true);
  EXPECT_TRUE(torch::equal(velocity(*lora, in), v_lora));
  // The gradient reaches A and B, not W0.
  velocity(*lora, in).square().sum().backward();
  for (const auto& kv : lora->named_parameters())
    EXPECT_EQ(kv.value().grad().defined(), kv.key().rfind("lora.", 0) == 0) << kv.key();
}

TEST(Lora, MergedEqualsAdapted) {
  auto base = base_model();
  const auto in = inputs();
  LoraVelocityField lora(base, LoraOptions().rank(3).alpha(6).targets({"*"}));
  train_adapters(*lora, 4);
  auto merged = lora->merged();
  EXPECT_EQ(merged->spec(), base->spec());  // the base architecture, no adapters
  const auto v = velocity(*lora, in), v_merged = velocity(*merged, in);
  EXPECT_LT((v - v_merged).abs().max().item<double>(), 1e-5 * (1.0 + v.abs().max().item<double>()));
  // A merged layer is W0 + (alpha / r) B A.
  auto w0 = base->named_parameters()["down.0.conv1.weight"];
  auto w = merged->named_parameters()["down.0.conv1.weight"];
  auto A = lora->lora_A("down.0.conv1"), B = lora->lora_B("down.0.conv1");
  auto expected = w0 + 2.0 * torch::mm(B.flatten(1), A.flatten(1)).view(w0.sizes());
  EXPECT_TRUE(torch::allclose(w, expected, 0, 1e-6));
}

// y = W0 x + s B (A x): a float64 base keeps float32 adapters and float32 gradients, its outputs
// stay float64 and equal the merged float64 model's, and no forward or backward writes into its
// weights.
TEST(Lora, ABaseOfAnotherDtypeKeepsFloat32AdaptersAndIsNeverWritten) {
  auto base = base_model();
  base->to(torch::kDouble);
  std::vector<torch::Tensor> before;
  for (const auto& p : base->parameters()) before.push_back(p.detach().clone());
  LoraVelocityField lora(base, LoraOptions().rank(2).targets({"*"}));
  train_adapters(*lora, 5);
  for (const auto& layer : lora->layers()) {
    EXPECT_EQ(lora->lora_A(layer).scalar_type(), torch::kFloat) << layer;
    EXPECT_EQ(lora->lora_B(layer).scalar_type(), torch::kFloat) << layer;
  }
  Inputs in = inputs();
  in.x = in.x.to(torch::kDouble);
  const auto v = velocity(*lora, in);
  EXPECT_EQ(v.scalar_type(), torch::kDouble);
  auto merged = lora->merged();  // in the base's dtype
  const auto v_merged = velocity(*merged, in);
  EXPECT_LT((v - v_merged).abs().max().item<double>(), 1e-5 * (1.0 + v.abs().max().item<double>()));
  v.square().sum().backward();
  for (const auto& layer : lora->layers()) {
    ASSERT_TRUE(lora->lora_A(layer).grad().defined()) << layer;
    EXPECT_EQ(lora->lora_A(layer).grad().scalar_type(), torch::kFloat) << layer;
  }
  const auto after = base->parameters();
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(torch::equal(after[i], before[i])) << "parameter " << i;
}

// Policies that share one base run at once on two threads: each thread's calls see its own adapters
// only.
TEST(Lora, ThreadsShareOneBase) {
  auto base = base_model();
  LoraVelocityField a(base, LoraOptions().rank(2).targets({"*"})),
      b(base, LoraOptions().rank(2).targets({"*"}));
  train_adapters(*a, 6);
  train_adapters(*b, 7);
  const auto in = inputs();
  torch::NoGradGuard no_grad;
  const auto va = velocity(*a, in), vb = velocity(*b, in), v0 = velocity(*base, in);
  ASSERT_FALSE(torch::allclose(va, vb));
  bool same_a = true, same_b = true, same_base = true;
  std::thread other([&] {
    torch::NoGradGuard g;
    for (int i = 0; i < 20; ++i)
      same_b = same_b && torch::allclose(velocity(*b, in), vb, 1e-5, 1e-6);
  });
  for (int i = 0; i < 20; ++i) {
    same_a = same_a && torch::allclose(velocity(*a, in), va, 1e-5, 1e-6);
    same_base = same_base && torch::allclose(velocity(*base, in), v0, 1e-5, 1e-6);
  }
  other.join();
  EXPECT_TRUE(same_a);
  EXPECT_TRUE(same_b);
  EXPECT_TRUE(same_base);
}

TEST(Lora, PeftLayoutRoundTrip) {
  auto base = base_model();
  const auto in = inputs();
  LoraVelocityField lora(base, LoraOptions().rank(2).alpha(4));
  train_adapters(*lora, 5);
  const std::string dir = ::testing::TempDir() + "lora_peft";
  save_peft_adapter(*lora, dir, "base.safetensors");
  // PEFT's names and layouts: A [r, in, kh, kw], B [out, r, 1, 1]; Linear A [r, in], B [out, r].
  const auto file = load_safetensors(dir + "/adapter_model.safetensors");
  EXPECT_EQ(file.at("base_model.model.down.0.conv1.lora_A.weight").sizes(),
            (std::vector<int64_t>{2, 16, 3, 3}));
  EXPECT_EQ(file.at("base_model.model.down.0.conv1.lora_B.weight").sizes(),
            (std::vector<int64_t>{16, 2, 1, 1}));
  EXPECT_EQ(file.at("base_model.model.mid.0.qkv.lora_A.weight").sizes(),
            (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(file.at("base_model.model.mid.0.qkv.lora_B.weight").sizes(),
            (std::vector<int64_t>{96, 2}));
  EXPECT_EQ(file.tensors.size(), 2 * lora->layers().size());
  const auto config = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 2);
  EXPECT_EQ(config["lora_alpha"], 4.0);
  EXPECT_EQ(config["target_modules"].get<std::vector<std::string>>(), lora->layers());
  EXPECT_EQ(config["base_model_name_or_path"], "base.safetensors");
  // Reloaded onto a copy of the base: the same velocity, bit for bit.
  auto reloaded = load_peft_adapter(dir, clone_velocity_field(*base));
  EXPECT_TRUE(torch::equal(velocity(*reloaded, in), velocity(*lora, in)));
  // An adapter of another rank does not fit.
  LoraVelocityField other(base_model(), LoraOptions().rank(3));
  save_peft_adapter(*other, dir + "_r3");
  std::filesystem::copy_file(dir + "/adapter_config.json", dir + "_r3/adapter_config.json",
                             std::filesystem::copy_options::overwrite_existing);
  try {
    load_peft_adapter(dir + "_r3", clone_velocity_field(*base));
    FAIL() << "a rank-3 adapter loaded as rank 2";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [3, 16, 3, 3], the layer needs [2, 16, 3, 3]"),
              std::string::npos)
        << e.what();
  }
}

TEST(Lora, CheckpointRoundTripAndSharedCopies) {
  auto base = base_model();
  const auto in = inputs();
  LoraVelocityField lora(base, LoraOptions().rank(2));
  train_adapters(*lora, 6);
  const std::string path = ::testing::TempDir() + "lora_model.safetensors";
  save_checkpoint(path, {{"policy", lora.get()}});
  auto loaded = load_checkpoint_model(path, "policy");
  ASSERT_NE(as_lora(*loaded), nullptr);
  EXPECT_TRUE(torch::equal(velocity(*loaded, in), velocity(*lora, in)));
  EXPECT_TRUE(torch::equal(velocity(as_lora(*loaded)->base(), in), velocity(*base, in)));
  // A frozen copy (as the EMA old policy is made) shares the base and copies the adapters.
  auto copy = frozen_copy(*lora);
  auto p = lora->named_parameters(), c = copy->named_parameters();
  for (const auto& kv : p) {
    const bool adapter = kv.key().rfind("lora.", 0) == 0;
    EXPECT_EQ(c[kv.key()].is_same(kv.value()), !adapter) << kv.key();
    EXPECT_FALSE(c[kv.key()].requires_grad()) << kv.key();
  }
  // The same adapters on the same base; equal to rounding (the branch's convolutions may round
  // differently on other buffers in newer LibTorch).
  EXPECT_TRUE(torch::allclose(velocity(*copy, in), velocity(*lora, in), 1e-5, 1e-6));
}

TEST(Lora, LayerPatterns) {
  auto base = base_model();
  const auto chosen = lora_target_layers(*base, {"down.*.conv1", "qkv"});
  EXPECT_EQ(chosen, (std::vector<std::string>{"down.0.conv1", "down.1.conv1", "mid.0.qkv"}));
  // A suffix matches at a dot: "0.conv1" selects the conv1 of every block numbered 0.
  EXPECT_EQ(lora_target_layers(*base, {"0.conv1"}),
            (std::vector<std::string>{"down.0.conv1", "mid.0.conv1", "up.0.conv1"}));
  try {
    lora_target_layers(*base, {"conv1", "to_q"});
    FAIL() << "an unmatched pattern was accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("pattern 'to_q' matches no Conv2d or Linear layer"), std::string::npos)
        << what;
    EXPECT_NE(what.find("down.0.conv1"), std::string::npos) << what;
  }
  auto mixture = make_velocity_field(
      {{"type", "exact_mixture"},
       {"mixture", {{"weights", {1.0}}, {"means", {{0.0, 0.0}}}, {"stds", {1.0}}}}});
  EXPECT_THROW(lora_target_layers(*mixture, {"*"}), ConfigError);
  EXPECT_THROW(LoraOptions().rank(0).check(), ConfigError);
  EXPECT_THROW(LoraOptions().alpha(-1).check(), ConfigError);
  LoraVelocityField lora(base, LoraOptions());
  EXPECT_THROW(LoraVelocityField(lora.ptr(), LoraOptions()), ConfigError);  // adapters on adapters
}

// Every registered method, through the Trainer, with a LoRA policy and the base as its reference:
// the optimiser holds the adapters alone, and the base's weights do not move by a bit.
class LoraTraining : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraTraining, OnlyAdaptersTrain) {
  const std::string name = GetParam();
  auto cfg = Config::resolve(finetune_params(), "", {{"method", name}});
  cfg.apply_defaults(methods().get(name).preset);
  auto base = base_model();
  std::map<std::string, torch::Tensor> before;
  for (const auto& kv : base->named_parameters()) before[kv.key()] = kv.value().clone();
  LoraVelocityField lora(base, LoraOptions().rank(2));
  Rng init(3);
  lora->reset_adapters(init);
  auto reward = make_reward({{"type", "brightness"}}, 64);
  Trainer trainer(lora.ptr(), base, reward, methods().get(name).make(cfg),
                  TrainerOptions()
                      .sample_shape({1, 8, 8})
                      .groups(2)
                      .group_size(4)
                      .rollout(SampleOptions().steps(3))
                      .lr(1e-2)
                      .minibatches(1)
                      .seed(1),
                  ConditionSource{[](int64_t groups, Rng& rng) {
                                    return Condition::classes(rng.uniform_int(3, {groups}));
                                  },
                                  Condition()});
  int64_t adapter_scalars = 0;
  for (const auto& kv : lora->named_parameters())
    if (kv.key().rfind("lora.", 0) == 0) adapter_scalars += kv.value().numel();
  EXPECT_EQ(parameter_count(*lora), adapter_scalars);
  const auto B0 = lora->lora_B("down.0.conv1").clone();
  for (int i = 0; i < 2; ++i) trainer.step();
  for (const auto& kv : base->named_parameters())
    EXPECT_TRUE(torch::equal(kv.value(), before[kv.key()]))
        << name << ": base weight " << kv.key() << " moved";
  EXPECT_FALSE(torch::equal(lora->lora_B("down.0.conv1"), B0))
      << name << ": the adapters did not train";
  if (auto* old = trainer.old()) {  // the EMA old policy shares the base
    auto o = old->named_parameters();
    for (const auto& kv : base->named_parameters())
      EXPECT_TRUE(o["base." + kv.key()].is_same(kv.value())) << kv.key();
  }
}

INSTANTIATE_TEST_SUITE_P(AllMethods, LoraTraining, ::testing::ValuesIn(methods().names()),
                         testing::param_name);

}  // namespace
}  // namespace ramflow
