// SD3 / SD3.5's MM-DiT against diffusers: golden outputs of tiny random transformers that diffusers
// built and ran (tests/fixtures/sd3/generate.py), the position table, attention, dtypes, LoRA's
// targets, and the errors of a bad transformer folder.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/attention.h"
#include "ramflow/diffusers_files.h"
#include "ramflow/diffusers_pipeline.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"
#include "ramflow/guidance.h"
#include "ramflow/lora.h"
#include "ramflow/lora_diffusers.h"
#include "ramflow/safetensors.h"
#include "ramflow/sampler.h"
#include "ramflow/sd3_transformer.h"
#include "ramflow/time.h"
#include "ramflow/vae_decoder.h"

namespace ramflow {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& pipeline) {
  return testing::source("tests/fixtures/sd3/" + pipeline);
}

VelocityFieldPtr load_transformer(const std::string& pipeline,
                                  const std::string& dtype = "float32") {
  return make_velocity_field(
      {{"type", "sd3"}, {"weights", fixture(pipeline) + "/transformer"}, {"dtype", dtype}});
}

/// max |a - b| / max(1, max |b|): the error relative to the reference's scale.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(1.0, b.abs().max().item<double>());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() / scale;
}

/// The golden forward pass: diffusers' output in float64 for fractional time inputs (1000 t).
/// Without gradients (the fused attention inputs of a float32 model), or recording them (LibTorch's
/// operators throughout).
torch::Tensor golden_forward(VelocityFieldImpl& model, const SafetensorsFile& g,
                             bool record_gradients = false) {
  const auto& t_model = g.at("forward_t");  // the network's time input 1000 t
  const Condition cond(torch::arange(t_model.size(0)),
                       {{"context", g.at("forward_context")}, {"pooled", g.at("forward_pooled")}});
  torch::AutoGradMode mode(record_gradients);
  return model.forward(g.at("forward_x"), t_model / 1000.0, cond).detach();
}

class SD3Golden : public ::testing::TestWithParam<std::string> {};

// SD3 (patch 1, no qk-norm) and SD3.5 (patch 2, RMS qk-norm, a dual, a plain and the last block,
// non-square latents, a table larger than the grid, norm weights that are not 1): float32 against
// diffusers' float64.
TEST_P(SD3Golden, ForwardMatchesDiffusers) {
  auto model = load_transformer(GetParam());
  const auto g = load_safetensors(fixture(GetParam()) + "/golden.safetensors");
  const auto v = golden_forward(*model, g);
  ASSERT_EQ(v.sizes(), g.at("forward_v").sizes());
  EXPECT_LT(relative_error(v, g.at("forward_v")), 2e-5);
  EXPECT_LT(relative_error(golden_forward(*model, g, /*record_gradients=*/true), g.at("forward_v")),
            2e-5);
  EXPECT_GT(g.at("forward_v").abs().max().item<double>(), 0.1);  // a golden that says something
}

// bfloat16 and float16 weights compute the same function to their precision; the output comes back
// in x's dtype (float32).
TEST_P(SD3Golden, HalfPrecisionWeightsStayClose) {
  const auto g = load_safetensors(fixture(GetParam()) + "/golden.safetensors");
  for (const std::string dtype : {"bfloat16", "float16"}) {
    try {
      check_dtype_computes(parse_dtype(dtype, "test"), torch::kCPU, "--dtype");
    } catch (const ConfigError& e) {
      // Debian's LibTorch 1.13 has no float16 matmul on CPUs: the refusal names it.
      EXPECT_NE(std::string(e.what()).find("cannot compute in " + dtype + " on cpu"),
                std::string::npos)
          << e.what();
      continue;
    }
    auto model = load_transformer(GetParam(), dtype);
    for (const auto& p : model->parameters()) ASSERT_EQ(dtype_name(p.scalar_type()), dtype);
    const auto v = golden_forward(*model, g);
    EXPECT_EQ(v.scalar_type(), torch::kFloat32);
    EXPECT_LT(relative_error(v, g.at("forward_v")), dtype == "bfloat16" ? 0.08 : 0.01) << dtype;
  }
}

// The stored position table is the sin-cos formula (so a randomly initialised model has it too).
TEST_P(SD3Golden, PositionTableIsTheStoredOne) {
  const auto dir = fixture(GetParam()) + "/transformer";
  const auto options =
      SD3TransformerOptions::from_json(read_component_config(dir, "SD3Transformer2DModel"));
  const auto file = load_safetensors(component_weight_files(dir).front());
  EXPECT_LT(relative_error(sd3_position_table(options), file.at("pos_embed.pos_embed")), 1e-6);
}

// The scheduler's grid (FlowMatchEulerDiscreteScheduler(shift=3).set_timesteps(N), sigma = 0
// appended) for 4 and 10 steps.
TEST_P(SD3Golden, GridIsTheSchedulers) {
  const auto g = load_safetensors(fixture(GetParam()) + "/golden.safetensors");
  for (int64_t n : {4, 10}) {
    const auto grid = diffusers_grid(n, 3.0);
    const auto expected = g.at("sigmas_" + std::to_string(n));
    ASSERT_EQ(static_cast<int64_t>(grid.size()), expected.numel());
    for (int64_t k = 0; k <= n; ++k)
      EXPECT_NEAR(grid[k], expected[k].item<double>(), 1e-6) << "step " << k << " of " << n;
  }
}

/// The golden prompts as conditions, and the encoded negative prompt as the null condition.
std::pair<Condition, Condition> golden_conditions(const SafetensorsFile& g) {
  const auto& embeds = g.at("prompt_embeds");
  return {Condition(torch::arange(embeds.size(0)),
                    {{"context", embeds}, {"pooled", g.at("pooled_prompt_embeds")}}),
          Condition(torch::full({1}, kNullId, torch::kInt64),
                    {{"context", g.at("negative_prompt_embeds")},
                     {"pooled", g.at("negative_pooled_prompt_embeds")}})};
}

/// 4 guided Euler steps on the scheduler's grid, as StableDiffusion3Pipeline samples.
torch::Tensor pipeline_sample(VelocityFieldImpl& model, const SafetensorsFile& g) {
  const auto [cond, null] = golden_conditions(g);
  GuidedVelocityImpl guided(model, 2.0, null);
  const auto options = SampleOptions().sampler("euler").steps(4).shift(3.0).grid("diffusers");
  return sample(guided, g.at("sample_noise"), cond, options).x0;
}

// The pipeline's 4-step sample with guidance 2 (latents, and the images decoded by the VAE, in [0,
// 1] as the pipeline gives them).
TEST_P(SD3Golden, GuidedSampleMatchesThePipeline) {
  auto model = load_transformer(GetParam());
  auto decoder = make_decoder({{"type", "vae"}, {"weights", fixture(GetParam()) + "/vae"}});
  const auto g = load_safetensors(fixture(GetParam()) + "/golden.safetensors");
  const auto latents = pipeline_sample(*model, g);
  EXPECT_LT(relative_error(latents, g.at("sample_latents")), 1e-4);
  const auto images = (decode_samples(*decoder, latents) + 1) / 2;  // [-1, 1] -> [0, 1]
  EXPECT_LT((images - g.at("sample_images")).abs().max().item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Pipelines, SD3Golden, ::testing::Values("tiny-sd3", "tiny-sd35"),
                         [](const auto& info) {
                           return info.param == "tiny-sd3" ? std::string("sd3")
                                                           : std::string("sd35");
                         });

TEST(SD3, AttentionEqualsTheExplicitFormula) {
  Rng rng(3);
  const auto q = rng.randn({2, 3, 7, 8}), k = rng.randn({2, 3, 5, 8}), v = rng.randn({2, 3, 5, 8});
  EXPECT_TRUE(torch::allclose(attention(q, k, v), attention_reference(q, k, v), 1e-5, 1e-6));
  // The explicit formula itself, for one query row: softmax(q k^T / sqrt(8)) v.
  const auto w = torch::softmax(torch::mv(k[1][2], q[1][2][4]) / std::sqrt(8.0), 0);  // [5]
  EXPECT_TRUE(torch::allclose(attention_reference(q, k, v)[1][2][4], torch::mv(v[1][2].t(), w),
                              1e-5, 1e-6));
}

// The eight attention projections Flow-GRPO and diffusers' SD3 scripts adapt: 8 per block, 7 in
// the last block (no to_add_out); attn2 of a dual block is not among them.
TEST(SD3, LoraTargetsTheAttentionProjections) {
  auto model = load_transformer("tiny-sd35");
  const std::vector<std::string> targets = {"attn.to_q",       "attn.to_k",       "attn.to_v",
                                            "attn.to_out.0",   "attn.add_q_proj", "attn.add_k_proj",
                                            "attn.add_v_proj", "attn.to_add_out"};
  const auto layers = lora_target_layers(*model, targets);
  EXPECT_EQ(layers.size(), 8u + 8u + 7u);
  for (const auto& l : layers) EXPECT_EQ(l.find("attn2"), std::string::npos) << l;
  EXPECT_NE(std::find(layers.begin(), layers.end(), "transformer_blocks.0.attn.to_out.0"),
            layers.end());
}

// A LoRA that diffusers saved (save_lora_weights, rank 2, alpha 4 in its metadata) and loaded
// (load_lora_weights) gives the pipeline's adapted sample here too; written back in diffusers'
// format, it reads the same.
TEST(SD3, DiffusersLoraGivesThePipelinesAdaptedSample) {
  const auto dir = fixture("tiny-sd35");
  auto lora = load_diffusers_lora(dir + "/lora/pytorch_lora_weights.safetensors",
                                  load_transformer("tiny-sd35"));
  EXPECT_EQ(lora->options().rank(), 2);
  EXPECT_EQ(lora->options().alpha(), 4.0);
  EXPECT_EQ(lora->layers().size(), 23u);
  const auto g = load_safetensors(dir + "/golden.safetensors");
  const auto golden = load_safetensors(dir + "/golden_lora.safetensors");
  const auto latents = pipeline_sample(*lora, g);
  EXPECT_LT(relative_error(latents, golden.at("lora_sample_latents")), 1e-4);
  // The adapters matter: the sample without them is far from it.
  EXPECT_GT(relative_error(g.at("sample_latents"), golden.at("lora_sample_latents")), 1e-2);
  auto decoder = make_decoder({{"type", "vae"}, {"weights", dir + "/vae"}});
  const auto images = (decode_samples(*decoder, latents) + 1) / 2;
  EXPECT_LT((images - golden.at("lora_sample_images")).abs().max().item<double>(), 1e-4);

  const auto path = testing::fresh_temp_dir("sd3_lora") + ".safetensors";
  save_diffusers_lora(*lora, path);
  const auto meta =
      nlohmann::json::parse(read_safetensors_metadata(path).at("lora_adapter_metadata"));
  EXPECT_EQ(meta["transformer.lora_alpha"], 4.0);
  EXPECT_EQ(meta["transformer.r"], 2);
  auto again = load_diffusers_lora(path, load_transformer("tiny-sd35"));
  for (const auto& layer : lora->layers()) {
    EXPECT_TRUE(torch::equal(again->lora_A(layer), lora->lora_A(layer))) << layer;
    EXPECT_TRUE(torch::equal(again->lora_B(layer), lora->lora_B(layer))) << layer;
  }
}

// A LoRA that `ramflow finetune` trained and exported (generate.py --ramflow): diffusers loaded it
// with load_lora_weights and sampled; ramflow's own sample with it is the same.
TEST(SD3, RamflowsExportedLoraGivesDiffusersSample) {
  const auto dir = fixture("tiny-sd35");
  auto lora = load_diffusers_lora(dir + "/ramflow_lora/pytorch_lora_weights.safetensors",
                                  load_transformer("tiny-sd35"));
  const auto g = load_safetensors(dir + "/golden.safetensors");
  const auto diffusers = load_safetensors(dir + "/golden_ramflow_lora.safetensors");
  const auto latents = pipeline_sample(*lora, g);
  EXPECT_LT(relative_error(latents, diffusers.at("sample_latents")), 1e-4);
  EXPECT_GT(relative_error(g.at("sample_latents"), diffusers.at("sample_latents")), 1e-3)
      << "the trained adapters change the sample";
  auto decoder = make_decoder({{"type", "vae"}, {"weights", dir + "/vae"}});
  const auto images = (decode_samples(*decoder, latents) + 1) / 2;
  EXPECT_LT((images - diffusers.at("sample_images")).abs().max().item<double>(), 1e-4);
}

// A LoRA of another model names a module this one lacks: the error names it.
TEST(SD3, LoraOfAnotherModelIsRefused) {
  const auto file =
      load_safetensors(fixture("tiny-sd35") + "/lora/pytorch_lora_weights.safetensors");
  NamedTensors renamed = file.tensors;
  renamed[0].first = "transformer.transformer_blocks.7.attn.add_k_proj.lora_A.weight";
  renamed[1].first = "transformer.transformer_blocks.7.attn.add_k_proj.lora_B.weight";
  const auto path = testing::fresh_temp_dir("sd3_lora_other") + ".safetensors";
  save_safetensors(path, renamed, file.metadata);
  try {
    load_diffusers_lora(path, load_transformer("tiny-sd35"));
    ADD_FAILURE() << "accepted a LoRA of another model";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "names the module 'transformer_blocks.7.attn.add_k_proj', which the model lacks"),
              std::string::npos)
        << e.what();
  }
}

// Gradient checkpointing recomputes each block in the backward pass: the same gradients for every
// parameter (full training) and for LoRA's adapters, and torch::autograd::grad with respect to the
// input (the adjoint methods' VJP) works through it without touching .grad.
TEST(SD3, GradientCheckpointingGivesTheSameGradients) {
  const auto g = load_safetensors(fixture("tiny-sd35") + "/golden.safetensors");
  const Condition cond(torch::arange(2),
                       {{"context", g.at("forward_context")}, {"pooled", g.at("forward_pooled")}});
  const auto t = g.at("forward_t") / 1000.0;
  auto grads = [&](bool checkpointing, bool lora) {
    auto base = load_transformer("tiny-sd35");
    dynamic_cast<SD3TransformerImpl&>(*base).set_gradient_checkpointing(checkpointing);
    VelocityFieldPtr model = base;
    if (lora) {
      auto l = LoraVelocityField(
          base, LoraOptions().rank(2).targets({"attn.to_q", "attn.add_k_proj", "ff.net.2"}));
      torch::NoGradGuard no_grad;
      for (const auto& layer : l->layers()) l->lora_B(layer).fill_(0.05);
      model = l.ptr();
    } else {
      for (auto& p : model->parameters()) p.set_requires_grad(true);
    }
    const auto x = g.at("forward_x").clone().requires_grad_(true);
    auto v = model->forward(x, t, cond);
    // The input's VJP first (as Adjoint Matching takes it), then the loss's parameter gradients.
    const auto vjp =
        torch::autograd::grad({v}, {x}, {torch::ones_like(v)}, /*retain_graph=*/true)[0];
    std::vector<torch::Tensor> out = {vjp};
    for (const auto& p : model->parameters())
      EXPECT_FALSE(p.grad().defined()) << "the VJP touched .grad";
    (v * v).sum().backward();
    for (const auto& p : model->parameters())
      if (p.requires_grad()) out.push_back(p.grad().clone());
    return out;
  };
  for (bool lora : {false, true}) {
    const auto plain = grads(false, lora), checkpointed = grads(true, lora);
    ASSERT_EQ(plain.size(), checkpointed.size());
    EXPECT_GT(plain.size(), 1u);
    // Equal to float rounding, relative to each gradient's scale (the checkpointed forward runs
    // without autograd, where a LoRA layer multiplies by its merged weight).
    for (size_t i = 0; i < plain.size(); ++i)
      EXPECT_LE((checkpointed[i] - plain[i]).abs().max().item<double>(),
                1e-5 * plain[i].abs().max().item<double>())
          << (lora ? "LoRA" : "full") << " gradient " << i;
  }
  EXPECT_EQ(load_transformer("tiny-sd35")->spec().count("gradient_checkpointing"), 0u);
  auto on = make_velocity_field({{"type", "sd3"},
                                 {"weights", fixture("tiny-sd35") + "/transformer"},
                                 {"gradient_checkpointing", true}});
  EXPECT_TRUE(dynamic_cast<SD3TransformerImpl&>(*on).gradient_checkpointing());
}

// The spec rebuilds the model from the same files; a random model's spec carries its config.
TEST(SD3, SpecRoundTrips) {
  auto model = load_transformer("tiny-sd35");
  const auto spec = model->spec();
  EXPECT_EQ(spec["weights"], fixture("tiny-sd35") + "/transformer");
  EXPECT_EQ(spec["config"]["dual_attention_layers"], nlohmann::json::array({0}));
  auto again = make_velocity_field(spec);
  const auto a = model->named_parameters(), b = again->named_parameters();
  for (const auto& kv : a) EXPECT_TRUE(torch::equal(kv.value(), b[kv.key()])) << kv.key();
}

// A copy of the tiny SD3.5 transformer folder in a fresh directory, to break.
std::string transformer_copy(const std::string& name) {
  const auto dir = testing::fresh_temp_dir("sd3_" + name);
  fs::create_directories(dir);
  fs::copy(fixture("tiny-sd35") + "/transformer", dir, fs::copy_options::recursive);
  return dir;
}

void expect_input_error(const std::string& dir, const std::string& needle) {
  try {
    make_velocity_field({{"type", "sd3"}, {"weights", dir}});
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(SD3, BadFoldersNameTheFileAndWhatIsWrong) {
  {
    const auto dir = transformer_copy("no_config");
    fs::remove(dir + "/config.json");
    expect_input_error(dir, "config.json: missing");
  }
  {
    const auto dir = transformer_copy("class");
    write(dir + "/config.json", R"({"_class_name": "UNet2DConditionModel"})");
    expect_input_error(
        dir, "\"_class_name\" is 'UNet2DConditionModel', expected 'SD3Transformer2DModel'");
  }
  {
    // A config that does not fit the weights: the tensor, the shape found and the one expected.
    const auto dir = transformer_copy("shape");
    auto config = read_component_config(dir, "SD3Transformer2DModel");
    config["pooled_projection_dim"] = 21;
    write(dir + "/config.json", config.dump());
    expect_input_error(dir,
                       "tensor 'time_text_embed.text_embedder.linear_1.weight' has shape [16, 20], "
                       "the config gives [16, 21]");
  }
  {
    const auto dir = transformer_copy("no_weights");
    fs::remove(dir + "/diffusion_pytorch_model.safetensors");
    expect_input_error(dir, "no weights (neither diffusion_pytorch_model.safetensors nor");
  }
  {
    // A sharded checkpoint whose index names a shard that is not there.
    const auto dir = transformer_copy("shards");
    fs::rename(dir + "/diffusion_pytorch_model.safetensors", dir + "/part-1.safetensors");
    write(dir + "/diffusion_pytorch_model.safetensors.index.json",
          R"({"metadata": {}, "weight_map": {"proj_out.weight": "part-1.safetensors",
                                              "proj_out.bias": "part-2.safetensors"}})");
    expect_input_error(dir, "names the shard part-2.safetensors, which is missing");
  }
  {
    // Another model's weights: a tensor this config does not have.
    const auto dir = transformer_copy("extra");
    auto config = read_component_config(dir, "SD3Transformer2DModel");
    config["dual_attention_layers"] = nlohmann::json::array();
    write(dir + "/config.json", config.dump());
    expect_input_error(dir, "tensor 'transformer_blocks.0.attn2.");
  }
}

// Sharded weights load like a single file (each shard read in turn).
// A scheduler whose grid ramflow does not compute is refused, naming the file and the setting.
TEST(SD3, SchedulerSettingsOutsideTheGridAreRefused) {
  const std::string tiny = fixture("tiny-sd35");
  const auto original = nlohmann::json::parse(read_file(tiny + "/scheduler/scheduler_config.json"));
  EXPECT_EQ(read_diffusers_pipeline(tiny).shift, original.at("shift").get<double>());
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"num_train_timesteps", 500}, {"use_dynamic_shifting", true}, {"shift", 0}}) {
    const auto dir = testing::fresh_temp_dir("sd3_scheduler_" + key);
    fs::create_directories(dir);
    fs::copy(tiny, dir, fs::copy_options::recursive);
    auto changed = original;
    changed[key] = value;
    write(dir + "/scheduler/scheduler_config.json", changed.dump());
    try {
      read_diffusers_pipeline(dir);
      ADD_FAILURE() << key << ": no error";
    } catch (const InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(dir + "/scheduler/scheduler_config.json"), std::string::npos) << what;
      EXPECT_NE(what.find(key), std::string::npos) << what;
    }
  }
}

TEST(SD3, ShardedWeightsLoad) {
  const auto dir = transformer_copy("sharded_ok");
  const auto file = load_safetensors(dir + "/diffusion_pytorch_model.safetensors");
  fs::remove(dir + "/diffusion_pytorch_model.safetensors");
  NamedTensors first, second;
  nlohmann::json map = nlohmann::json::object();
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    const bool one = i % 2 == 0;
    (one ? first : second).push_back(file.tensors[i]);
    map[file.tensors[i].first] =
        one ? "m-00001-of-00002.safetensors" : "m-00002-of-00002.safetensors";
  }
  save_safetensors(dir + "/m-00001-of-00002.safetensors", first);
  save_safetensors(dir + "/m-00002-of-00002.safetensors", second);
  write(dir + "/diffusion_pytorch_model.safetensors.index.json",
        nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", map}}).dump());
  auto sharded = make_velocity_field({{"type", "sd3"}, {"weights", dir}});
  auto single = load_transformer("tiny-sd35");
  const auto a = sharded->named_parameters(), b = single->named_parameters();
  for (const auto& kv : a) EXPECT_TRUE(torch::equal(kv.value(), b[kv.key()])) << kv.key();
}

TEST(SD3, ConfigErrorsNameTheField) {
  auto config =
      read_component_config(fixture("tiny-sd35") + "/transformer", "SD3Transformer2DModel");
  auto expect = [&](nlohmann::json c, const std::string& needle) {
    try {
      SD3TransformerOptions::from_json(c, "cfg.json");
      ADD_FAILURE() << "accepted; expected '" << needle << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto c = config;
  c["caption_projection_dim"] = 24;
  expect(c, "caption_projection_dim 24 must equal num_attention_heads x attention_head_dim = 16");
  c = config;
  c["qk_norm"] = "layer_norm";
  expect(c, "'qk_norm' is \"layer_norm\"");
  c = config;
  c["dual_attention_layers"] = {5};
  expect(c, "'dual_attention_layers' holds 5");
  c = config;
  c["num_layer"] = 3;
  expect(c, "num_layer");
}

}  // namespace
}  // namespace ramflow
