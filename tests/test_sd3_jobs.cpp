// A diffusers SD3 pipeline folder as a base, through the jobs: `ramflow sample --base` reproduces
// StableDiffusion3Pipeline's sample (with and without diffusers' own LoRA); finetune with LoRA runs
// RAM and Flow-GRPO end to end on the tiny SD3.5 pipeline (prompts, guidance, the VAE, a reward on
// the decoded image), writes checkpoints of the adapters alone, resumes bit for bit and exports a
// LoRA in diffusers' format; bad inputs are refused before any compute, naming the culprit.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/lora_diffusers.h"
#include "ramflow/safetensors.h"
#include "ramflow/sd3_transformer.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

using Flags = std::vector<std::pair<std::string, std::string>>;

const std::string& pipeline() {
  static const std::string dir = testing::source("tests/fixtures/sd3/tiny-sd35");
  return dir;
}
std::string golden_path() { return pipeline() + "/golden.safetensors"; }

/// The golden prompts' text (three lines, one a JSON line with metadata), in a file of this
/// process's own: ctest runs the parameterised tests in parallel processes, and one rewriting a
/// shared file while another reads it gave "no prompts".
std::string prompts_file() {
  const auto path =
      testing::fresh_temp_dir("sd3_jobs_prompts_" + std::to_string(::getpid())) + ".txt";
  std::ofstream(path) << "a red cube\n{\"prompt\": \"two dogs\", \"count\": 2}\nthe word STOP\n";
  return path;
}

/// The golden sample's initial noise as an --init-noise file.
std::string noise_file() {
  const auto path =
      testing::fresh_temp_dir("sd3_jobs_noise_" + std::to_string(::getpid())) + ".safetensors";
  save_safetensors(path, {{"noise", load_safetensors(golden_path()).at("sample_noise")}});
  return path;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(SD3Jobs, SampleReproducesThePipeline) {
  std::ostringstream log;
  const auto g = load_safetensors(golden_path());
  const auto noise = noise_file();
  for (const bool lora : {false, true}) {
    const auto out = testing::fresh_temp_dir(lora ? "sd3_sample_lora" : "sd3_sample");
    Flags flags = {
        {"base", pipeline()},  {"prompt_embeds", golden_path()}, {"prompts", prompts_file()},
        {"init_noise", noise}, {"rollout_steps", "4"},           {"cfg", "2"},
        {"out", out}};
    if (lora) flags.push_back({"lora", pipeline() + "/lora/pytorch_lora_weights.safetensors"});
    const auto result = run_sample(Config::resolve(sample_params(), "", flags), JobIO{log, false});
    EXPECT_EQ(result["samples"], 3);
    const auto s = load_safetensors(out + "/samples.safetensors");
    const auto golden = lora ? load_safetensors(pipeline() + "/golden_lora.safetensors") : g;
    const std::string prefix = lora ? "lora_" : "";
    EXPECT_LT(max_diff(s.at("latents"), golden.at(prefix + "sample_latents")), 1e-4);
    EXPECT_LT(max_diff(s.at("images"), golden.at(prefix + "sample_images")), 1e-4);
    EXPECT_EQ(nlohmann::json::parse(s.metadata.at("ramflow"))["prompts"][1], "two dogs");
    EXPECT_TRUE(fs::exists(out + "/samples.png"));
  }
}

Flags tiny_finetune(const std::string& method, const std::string& out, int64_t steps) {
  return {{"out", out},
          {"method", method},
          {"base", pipeline()},
          {"prompt_embeds", golden_path()},
          {"prompts", prompts_file()},
          {"reward", "brightness"},
          {"lora_rank", "2"},
          {"lora_alpha", "4"},
          {"steps", std::to_string(steps)},
          {"groups", "2"},
          {"group_size", "2"},
          {"rollout_steps", "3"},
          {"cfg", "2"},
          {"lr", "0.01"},
          {"eval_samples", "3"},
          {"eval_curve_samples", "3"},
          {"eval_steps", "3"},
          {"eval_kl_samples", "2"},
          {"eval_kl_steps", "2"},
          {"eval_every", "2"},
          {"checkpoint_every", "2"}};
}

class SD3Finetune : public ::testing::TestWithParam<std::string> {};

// 2 steps, a resume, 2 more equal 4 straight steps bit for bit; checkpoints hold the adapters (the
// base is the pipeline's files); the exported diffusers LoRA is the evaluated model's adapters.
TEST_P(SD3Finetune, LoraRunResumesBitForBitAndExportsForDiffusers) {
  const std::string method = GetParam();
  std::ostringstream log;
  const auto split = testing::fresh_temp_dir("sd3_split_" + method),
             straight = testing::fresh_temp_dir("sd3_straight_" + method);
  run_finetune(Config::resolve(finetune_params(), "", tiny_finetune(method, split, 2)),
               JobIO{log, false});
  run_finetune(Config::resolve(finetune_params(), "", {{"resume", split}, {"steps", "4"}}),
               JobIO{log, false});
  const auto summary =
      run_finetune(Config::resolve(finetune_params(), "", tiny_finetune(method, straight, 4)),
                   JobIO{log, false});
  EXPECT_EQ(testing::metrics_without_seconds(split), testing::metrics_without_seconds(straight));
  testing::expect_same_checkpoint(split + "/checkpoints/step-00000004.safetensors",
                                  straight + "/checkpoints/step-00000004.safetensors");
  // The task, the grid and the decoder came from the pipeline.
  const auto config = nlohmann::json::parse(read_file(straight + "/config.json"));
  EXPECT_EQ(config["task"], "prompts");
  EXPECT_EQ(config["rollout_grid"], "diffusers");
  EXPECT_EQ(config["rollout_shift"], 3.0);
  EXPECT_EQ(config["decoder"]["type"], "vae");
  EXPECT_EQ(summary["evaluation"], "reward");
  // A checkpoint holds adapters and optimiser state, not the base's weights.
  const auto ckpt = load_safetensors(straight + "/checkpoints/final.safetensors");
  for (const auto& [name, t] : ckpt.tensors)
    EXPECT_EQ(name.find(".base."), std::string::npos) << name << " (the base is the files')";
  auto policy = load_checkpoint_model(straight + "/checkpoints/final.safetensors", "policy");
  // The diffusers export: the evaluated model's adapters, alpha in the metadata.
  auto exported = load_diffusers_lora(
      straight + "/lora/pytorch_lora_weights.safetensors",
      make_velocity_field({{"type", "sd3"}, {"weights", pipeline() + "/transformer"}}));
  EXPECT_EQ(exported->options().alpha(), 4.0);
  auto* trained = as_lora(*policy);
  ASSERT_NE(trained, nullptr);
  EXPECT_EQ(exported->layers(), trained->layers());
  EXPECT_EQ(exported->layers().size(), sd3_lora_targets().size() * 3 - 1);
  bool moved = false;
  for (const auto& layer : exported->layers()) {
    EXPECT_TRUE(torch::equal(exported->lora_B(layer), trained->lora_B(layer))) << layer;
    moved = moved || exported->lora_B(layer).abs().max().item<double>() > 0;
  }
  EXPECT_TRUE(moved) << "training moved no adapter";
}

// Weights held in bfloat16: rollouts, losses and rewards stay float32 (the model casts its input
// and output), so a step runs where the LibTorch has no bfloat16 loss kernels, and it trains.
TEST(SD3Jobs, BFloat16WeightsTrain) {
  std::ostringstream log;
  const auto out = testing::fresh_temp_dir("sd3_bf16");
  auto flags = tiny_finetune("ram", out, 2);
  flags.push_back({"dtype", "bfloat16"});
  const auto summary =
      run_finetune(Config::resolve(finetune_params(), "", flags), JobIO{log, false});
  EXPECT_TRUE(std::isfinite(summary["reward_after"].get<double>())) << summary.dump();
  auto policy = load_checkpoint_model(out + "/checkpoints/final.safetensors", "policy");
  auto* trained = as_lora(*policy);
  ASSERT_NE(trained, nullptr);
  double moved = 0;
  for (const auto& layer : trained->layers())
    moved = std::max(moved, trained->lora_B(layer).abs().max().item<double>());
  EXPECT_GT(moved, 0) << "training moved no adapter";
}

INSTANTIATE_TEST_SUITE_P(Methods, SD3Finetune, ::testing::Values("ram", "flow-grpo"),
                         testing::param_name);

void expect_error(const std::function<void()>& run, const std::string& needle) {
  try {
    run();
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// A run on a diffusers pipeline is evaluated by `eval` from its checkpoint alone (the task from the
// run's prompt files, its grid, decoder and evaluation kind): the run's own final numbers. `sample`
// of such a checkpoint says how to sample it; `compare` runs on a pipeline with a curve of more
// samples than the evaluation set has (both capped at it).
TEST(SD3Jobs, EvalAndCompareTakeADiffusersRun) {
  std::ostringstream log;
  const auto out = testing::fresh_temp_dir("sd3_eval");
  const auto summary = run_finetune(
      Config::resolve(finetune_params(), "", tiny_finetune("ram", out, 2)), JobIO{log, false});
  const std::string ckpt = out + "/checkpoints/final.safetensors";
  const auto e = run_eval(Config::resolve(eval_params(), "",
                                          {{"checkpoint", ckpt},
                                           {"eval_samples", "3"},
                                           {"eval_steps", "3"},
                                           {"eval_kl_samples", "2"}}),
                          JobIO{log, false});
  EXPECT_EQ(e["task"], "prompts");
  EXPECT_EQ(e["evaluation"], "reward");
  EXPECT_NEAR(e["reward_model"].get<double>(), summary["reward_after"].get<double>(), 1e-6);
  EXPECT_NEAR(e["reward_reference"].get<double>(), summary["reward_before"].get<double>(), 1e-6);
  expect_error(
      [&] {
        run_sample(Config::resolve(sample_params(), "",
                                   {{"checkpoint", ckpt}, {"out", out + "/s.safetensors"}}),
                   JobIO{log, false});
      },
      "--lora RUN/lora/pytorch_lora_weights.safetensors");

  const auto cmp = testing::fresh_temp_dir("sd3_compare");
  auto flags = tiny_finetune("ram", cmp, 2);
  flags.erase(std::remove_if(flags.begin(), flags.end(),
                             [](const auto& kv) {
                               return kv.first == "method" || kv.first == "eval_curve_samples";
                             }),
              flags.end());
  flags.push_back({"methods", "ram,flow-grpo"});
  flags.push_back({"seeds", "1"});
  const auto report = run_compare(Config::resolve(compare_params(), "", flags), JobIO{log, false});
  EXPECT_EQ(report["failed_runs"], 0) << log.str();
  // The base's file-backed transformer is not copied into the comparison's directory.
  EXPECT_LT(fs::file_size(cmp + "/checkpoints/base.safetensors"), 64u * 1024);
}

TEST(SD3Jobs, BadInputIsRefusedBeforeAnyCompute) {
  std::ostringstream log;
  auto sample = [&](Flags flags) {
    return [flags, &log] {
      run_sample(Config::resolve(sample_params(), "", flags), JobIO{log, false});
    };
  };
  const auto out = testing::fresh_temp_dir("sd3_bad");
  // A folder that is not a pipeline, or one that lacks a file.
  const auto broken = testing::fresh_temp_dir("sd3_broken_pipeline");
  fs::create_directories(broken);
  fs::copy(pipeline(), broken, fs::copy_options::recursive);
  fs::remove(broken + "/scheduler/scheduler_config.json");
  expect_error(sample({{"base", broken}, {"prompt_embeds", golden_path()}, {"out", out}}),
               broken + "/scheduler/scheduler_config.json: missing");
  // Embeddings whose count differs from the prompt file's.
  const auto four = testing::fresh_temp_dir("sd3_four_prompts") + ".txt";
  std::ofstream(four) << "a\nb\nc\nd\n";
  expect_error(sample({{"base", pipeline()},
                       {"prompt_embeds", golden_path()},
                       {"prompts", four},
                       {"out", out}}),
               "holds 3 prompts' embeddings, " + four + " 4 prompts");
  // Embeddings of another width than the model's joint_attention_dim.
  const auto narrow = testing::fresh_temp_dir("sd3_narrow") + ".safetensors";
  {
    const auto g = load_safetensors(golden_path());
    save_safetensors(narrow,
                     {{"prompt_embeds", g.at("prompt_embeds").narrow(2, 0, 20)},
                      {"pooled_prompt_embeds", g.at("pooled_prompt_embeds")},
                      {"negative_prompt_embeds", g.at("negative_prompt_embeds").narrow(2, 0, 20)},
                      {"negative_pooled_prompt_embeds", g.at("negative_pooled_prompt_embeds")}});
  }
  expect_error(sample({{"base", pipeline()}, {"prompt_embeds", narrow}, {"out", out}}),
               "the embeddings' width is 20, the model's joint_attention_dim 24");
  // Latents that the patch size does not divide.
  const auto odd = testing::fresh_temp_dir("sd3_odd_noise") + ".safetensors";
  save_safetensors(odd, {{"noise", torch::zeros({3, 16, 7, 12})}});
  expect_error(sample({{"base", pipeline()},
                       {"prompt_embeds", golden_path()},
                       {"init_noise", odd},
                       {"out", out}}),
               "latents 7 x 12 are not divisible by the patch size 2");
  // A LoRA of another model.
  const auto other = testing::fresh_temp_dir("sd3_other_lora") + ".safetensors";
  {
    auto f = load_safetensors(pipeline() + "/lora/pytorch_lora_weights.safetensors");
    f.tensors[0].first = "transformer.transformer_blocks.9.attn.to_q.lora_A.weight";
    f.tensors[1].first = "transformer.transformer_blocks.9.attn.to_q.lora_B.weight";
    save_safetensors(other, f.tensors, f.metadata);
  }
  expect_error(
      sample(
          {{"base", pipeline()}, {"prompt_embeds", golden_path()}, {"lora", other}, {"out", out}}),
      "names the module 'transformer_blocks.9.attn.to_q', which the model lacks");
  // Flags of the other mode, and the prompts task without a pipeline.
  expect_error(
      sample(
          {{"base", pipeline()}, {"prompt_embeds", golden_path()}, {"steps", "4"}, {"out", out}}),
      "--steps applies to sampling a checkpoint");
  expect_error(
      [&] {
        run_finetune(
            Config::resolve(finetune_params(), "",
                            {{"task", "prompts"}, {"prompt_embeds", golden_path()}, {"out", out}}),
            JobIO{log, false});
      },
      "task 'prompts' post-trains a diffusers SD3 pipeline: --base must be its folder");
  EXPECT_FALSE(fs::exists(out + "/samples.safetensors"));
}

}  // namespace
}  // namespace ramflow
