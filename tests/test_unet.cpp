// The U-Net velocity field, classifier-free guidance, and the Python definitions of ramflow's
// networks.
#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/guidance.h"
#include "ramflow/lora.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/task.h"
#include "ramflow/unet.h"

namespace ramflow {
namespace {

UNetOptions small() { return UNetOptions().image_size(8).channels(16).mult({1, 2}).num_classes(3); }

// Every parameter perturbed (the zero-initialised layers too), so outputs depend on all of them.
void perturb(VelocityFieldImpl& m, uint64_t seed) {
  torch::NoGradGuard g;
  Rng rng(seed);
  for (auto& p : m.parameters()) p.add_(rng.randn(p.sizes()) * 0.1);
}

TEST(UNet, PyTorchNamesAndLayouts) {
  UNet m(UNetOptions().num_classes(10));
  auto params = m->named_parameters();
  auto shape = [&](const std::string& n) {
    const auto* p = params.find(n);
    EXPECT_NE(p, nullptr) << n;
    return p ? p->sizes().vec() : std::vector<int64_t>{};
  };
  EXPECT_EQ(shape("conv_in.weight"), (std::vector<int64_t>{16, 1, 3, 3}));
  EXPECT_EQ(shape("down.0.conv1.weight"), (std::vector<int64_t>{16, 16, 3, 3}));
  EXPECT_EQ(shape("down.1.skip.weight"), (std::vector<int64_t>{32, 16, 1, 1}));
  EXPECT_EQ(shape("down.0.resample.weight"), (std::vector<int64_t>{16, 16, 3, 3}));
  EXPECT_EQ(shape("time_mlp.0.weight"), (std::vector<int64_t>{64, 16}));
  EXPECT_EQ(shape("time_mlp.2.weight"), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(shape("class_emb.weight"), (std::vector<int64_t>{11, 64}));  // + the null row
  EXPECT_EQ(shape("mid.0.qkv.weight"), (std::vector<int64_t>{192, 64}));
  EXPECT_EQ(shape("up.0.conv1.weight"), (std::vector<int64_t>{64, 128, 3, 3}));
  EXPECT_EQ(shape("up.2.conv2.weight"), (std::vector<int64_t>{16, 16, 3, 3}));
  EXPECT_EQ(shape("conv_out.weight"), (std::vector<int64_t>{1, 16, 3, 3}));
  EXPECT_EQ(shape("down.0.norm1.weight"), (std::vector<int64_t>{16}));
}

TEST(UNet, StartsAtZeroAndDependsOnTimeAndLabel) {
  auto m = make_velocity_field(small().to_json(), 3);
  Rng rng(1);
  auto x = rng.randn({4, 1, 8, 8});
  auto t = rng.rand({4});
  const auto c = Condition::classes(torch::tensor(std::vector<int64_t>{0, 1, 2, kNullId}));
  EXPECT_EQ(m->forward(x, t, c).abs().max().item<float>(), 0.0f);  // conv_out starts at zero
  perturb(*m, 2);
  auto v = m->forward(x, t, c);
  ASSERT_EQ(v.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(v).all().item<bool>());
  // Same x and t, another label (incl. the null label): another velocity.
  auto x1 = x[0].unsqueeze(0).expand({4, 1, 8, 8});
  auto t1 = t[0].expand({4});
  auto v1 = m->forward(x1, t1, c);
  for (int64_t i = 1; i < 4; ++i) EXPECT_GT((v1[i] - v1[0]).abs().max().item<float>(), 1e-4) << i;
  // Another time: another velocity.
  EXPECT_GT((m->forward(x1, t1 * 0.5, c) - v1).abs().max().item<float>(), 1e-4);
  // A label outside the classes is refused.
  EXPECT_THROW(m->forward(x, t, Condition::classes(torch::tensor({0, 1, 2, 3}, torch::kLong))),
               c10::Error);
  EXPECT_THROW(m->forward(x, t, {}), c10::Error);
}

TEST(UNet, SeedFixesTheWeightsAndSpecsAreChecked) {
  auto a = make_velocity_field(small().to_json(), 5), b = make_velocity_field(small().to_json(), 5);
  auto c = make_velocity_field(small().to_json(), 6);
  EXPECT_TRUE(torch::equal(a->named_parameters()["down.0.conv1.weight"],
                           b->named_parameters()["down.0.conv1.weight"]));
  EXPECT_FALSE(torch::equal(a->named_parameters()["down.0.conv1.weight"],
                            c->named_parameters()["down.0.conv1.weight"]));
  EXPECT_THROW(make_velocity_field({{"type", "unet"}, {"image_size", 30}, {"mult", {1, 2, 2}}}),
               ConfigError);
  EXPECT_THROW(make_velocity_field({{"type", "unet"}, {"channels", 12}}),
               ConfigError);  // widths vs 8 groups
  EXPECT_THROW(make_velocity_field({{"type", "unet"}, {"depth", 3}}), ConfigError);
}

TEST(UNet, GradientsReachEveryParameter) {
  auto m = make_velocity_field(small().to_json(), 3);
  perturb(*m, 4);
  Rng rng(1);
  auto x = rng.randn({3, 1, 8, 8});
  m->forward(x, rng.rand({3}),
             Condition::classes(torch::tensor(std::vector<int64_t>{0, 1, kNullId})))
      .square()
      .sum()
      .backward();
  for (const auto& p : m->named_parameters())
    EXPECT_TRUE(p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0)
        << p.key();
}

TEST(Guidance, GuidedVelocityIsTheCfgCombination) {
  auto m = make_velocity_field(small().to_json(), 3);
  perturb(*m, 7);
  Rng rng(2);
  auto x = rng.randn({5, 1, 8, 8});
  auto t = rng.rand({5});
  const auto c = Condition::classes(torch::tensor({0, 1, 2, 0, 1}, torch::kLong));
  const auto null = Condition::classes(torch::full({1}, kNullId, torch::kLong));
  torch::NoGradGuard g;
  auto v_c = m->forward(x, t, c);
  auto v_u = m->forward(x, t, Condition::classes(torch::full({5}, kNullId, torch::kLong)));
  for (double w : {0.0, 1.0, 1.5, 4.0}) {
    auto v_w = GuidedVelocityImpl(*m, w, null).forward(x, t, c);
    // Equal up to float32 rounding: the guided call runs one batch of 2B, whose products may take
    // other kernels than two batches of B (OpenBLAS's Prescott kernels differ by 1e-5 here).
    EXPECT_TRUE(torch::allclose(v_w, v_u + w * (v_c - v_u), 1e-5, 1e-5 * (1 + w))) << "w = " << w;
  }
  EXPECT_TRUE(torch::equal(GuidedVelocityImpl(*m, 1.0, null).forward(x, t, c),
                           v_c));  // w = 1: one evaluation
  EXPECT_THROW(GuidedVelocityImpl(*m, -1.0, null), ConfigError);
  EXPECT_THROW(GuidedVelocityImpl(*m, 2.0, null).forward(x, t, {}), c10::Error);
  EXPECT_THROW(GuidedVelocityImpl(*m, 2.0, Condition()).forward(x, t, c),
               c10::Error);  // no null condition
}

// ramflow's velocity and python/ramflow_models.py's agree within 1e-5 (Debian's python3-torch).
void check_python(const VelocityFieldPtr& model, const torch::Tensor& x, const Condition& cond,
                  const std::string& tag) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("ramflow_interop_" + tag);
  std::filesystem::create_directories(dir);
  Rng rng(9);
  auto t = rng.rand({x.size(0)});
  torch::Tensor v;
  {
    torch::NoGradGuard g;
    v = model->forward(x, t, cond);
  }
  save_checkpoint((dir / "model.safetensors").string(), {{"policy", model.get()}});
  save_safetensors((dir / "io.safetensors").string(),
                   {{"x", x},
                    {"t", t},
                    {"cond", cond.defined() ? cond.at("label") : torch::empty({0}, torch::kLong)},
                    {"v", v}});
  const std::string script = std::string(RAMFLOW_TEST_SOURCE_DIR) + "/interop_check.py";
  const std::string cmd = std::string(RAMFLOW_PYTHON) + " " + script + " " +
                          (dir / "model.safetensors").string() + " policy " +
                          (dir / "io.safetensors").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(Interop, PythonUNetGivesTheSameVelocity) {
  auto m = make_velocity_field(UNetOptions().num_classes(10).to_json(), 1);
  perturb(*m, 3);
  Rng rng(4);
  check_python(m, rng.randn({6, 1, 28, 28}),
               Condition::classes(torch::tensor(std::vector<int64_t>{0, 3, 9, kNullId, 5, 1})),
               "unet");
}

TEST(Interop, PythonMergesLoraAdapters) {
  auto base = make_velocity_field(UNetOptions().num_classes(10).to_json(), 1);
  perturb(*base, 3);
  LoraVelocityField lora(base, LoraOptions().rank(3).alpha(5));
  perturb(*lora, 6);  // the adapters (and the base) away from their starts
  Rng rng(4);
  check_python(lora.ptr(), rng.randn({4, 1, 28, 28}),
               Condition::classes(torch::tensor(std::vector<int64_t>{0, 3, 9, kNullId})), "lora");
}

TEST(Interop, PythonMlpGivesTheSameVelocity) {
  auto m = make_velocity_field(MLPVelocityOptions(2).to_json(), 1);
  Rng rng(4);
  check_python(m, rng.randn({16, 2}), {}, "mlp");
  auto c = make_velocity_field(MLPVelocityOptions(3).num_classes(4).to_json(), 2);
  check_python(c, rng.randn({8, 3}),
               Condition::classes(torch::tensor({0, 1, 2, 3, 0, 1, 2, 3}, torch::kLong)),
               "mlp_cond");
}

}  // namespace
}  // namespace ramflow
