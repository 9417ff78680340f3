// SD3's VAE decoder against diffusers' AutoencoderKL (tests/fixtures/sd3/generate.py): upsamplers,
// a channel-changing shortcut, the mid-block attention, norm weights that are not 1; and gradients
// through it.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/errors.h"
#include "ramflow/safetensors.h"
#include "ramflow/vae_decoder.h"

namespace ramflow {
namespace {

namespace fs = std::filesystem;

std::string vae_dir() { return testing::source("tests/fixtures/sd3/tiny-sd35/vae"); }

// diffusers decodes z / scaling + shift in float64; ramflow in float32 and clamps to [-1, 1], as
// diffusers' postprocessing does in [0, 1].
TEST(VAEDecoder, DecodeMatchesDiffusers) {
  auto decoder = make_decoder({{"type", "vae"}, {"weights", vae_dir()}});
  const auto g =
      load_safetensors(testing::source("tests/fixtures/sd3/tiny-sd35/golden.safetensors"));
  const auto& z = g.at("vae_z");
  EXPECT_EQ(decoder->decoded_shape({z.size(1), z.size(2), z.size(3)}),
            (std::vector<int64_t>{3, 4 * z.size(2), 4 * z.size(3)}));
  torch::NoGradGuard no_grad;
  const auto x = decoder->forward(z);
  const auto expected = g.at("vae_image").clamp(-1.0, 1.0);
  ASSERT_EQ(x.sizes(), expected.sizes());
  EXPECT_LT((x - expected).abs().max().item<double>(), 2e-5);
  // A golden that says something: values inside the clamp, and values clamped.
  EXPECT_GT((g.at("vae_image").abs() < 0.9).sum().item<int64_t>(), 100);
  EXPECT_GT((g.at("vae_image").abs() > 1).sum().item<int64_t>(), 0);
}

// d r(decode(z)) / d z by autograd agrees with central finite differences (float64 weights would
// be tighter; float32 in the directional derivative along a random direction is enough to catch a
// detached path).
TEST(VAEDecoder, GradientMatchesFiniteDifferences) {
  auto decoder = make_decoder({{"type", "vae"}, {"weights", vae_dir()}});
  Rng rng(5);
  const auto z = (0.3 * rng.randn({1, 16, 4, 6})).requires_grad_(true);
  // A weighted sum of the pixels well inside the clamp at z (the clamp's kinks would make finite
  // differences disagree near +-1; clamped pixels have no gradient).
  torch::Tensor w;
  {
    torch::NoGradGuard no_grad;
    w = rng.randn({1, 3, 16, 24}) * (decoder->forward(z).abs() < 0.8);
  }
  auto reward = [&](const torch::Tensor& zz) { return (decoder->forward(zz) * w).sum(); };
  const auto grad = torch::autograd::grad({reward(z)}, {z})[0];
  const auto dir = rng.randn(z.sizes());
  const double h = 1e-3;
  torch::NoGradGuard no_grad;
  const double fd =
      (reward(z + h * dir).item<double>() - reward(z - h * dir).item<double>()) / (2 * h);
  const double ad = (grad * dir).sum().item<double>();
  // Central differences in float32 at h = 1e-3 agree to about 0.1% (1.3e-3 with OpenBLAS's
  // Prescott kernels); a detached path would be off by its whole share.
  EXPECT_NEAR(ad, fd, 5e-3 * std::max(1.0, std::abs(fd)));
  EXPECT_GT(std::abs(ad), 1e-3);
}

TEST(VAEDecoder, UnsupportedConfigsAreRefused) {
  const auto dir = testing::fresh_temp_dir("vae_config");
  fs::create_directories(dir);
  fs::copy(vae_dir(), dir, fs::copy_options::recursive);
  auto config = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  config["latents_mean"] = {0.0};
  std::ofstream(dir + "/config.json") << config.dump();
  try {
    make_decoder({{"type", "vae"}, {"weights", dir}});
    ADD_FAILURE() << "accepted latents_mean";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/config.json: 'latents_mean' is set"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ramflow
