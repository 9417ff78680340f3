// `ramflow sample --base DIR`: every prompt of an embeddings file sampled once by a diffusers SD3
// pipeline, as StableDiffusion3Pipeline samples it: Euler on the scheduler's grid, classifier-free
// guidance v_u + S (v_c - v_u) with the encoded empty prompt as the negative, the VAE's decode.
// Writes OUT/samples.safetensors ("latents" [N, C, h, w], "images" [N, 3, H, W] in [0, 1], float32;
// the prompts in the metadata) and OUT/samples.png (a grid).
#include <filesystem>

#include <torch/torch.h>

#include "jobs/resolve.h"
#include "jobs/sample_pipeline.h"
#include "ramflow/decoder.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"
#include "ramflow/guidance.h"
#include "ramflow/image.h"
#include "ramflow/lora_diffusers.h"
#include "ramflow/safetensors.h"
#include "ramflow/sampler.h"

namespace fs = std::filesystem;

namespace ramflow::jobs {
namespace {

/// The initial noise of --init-noise: its tensor "noise" [N, C, h, w].
torch::Tensor read_init_noise(const std::string& path, const DiffusersPipeline& pipeline) {
  const auto file = load_safetensors(path);
  const auto* noise = find_tensor(file.tensors, "noise");
  if (!noise) throw InputError(path + ": no tensor 'noise' (the initial latents [N, C, h, w])");
  const int64_t C = pipeline.transformer.in_channels(), P = pipeline.transformer.patch_size();
  if (noise->dim() != 4 || noise->size(1) != C)
    throw InputError(path + ": 'noise' must be [N, " + std::to_string(C) + ", h, w], found " +
                     c10::str(noise->sizes()));
  if (noise->size(2) % P || noise->size(3) % P)
    throw InputError(path + ": latents " + std::to_string(noise->size(2)) + " x " +
                     std::to_string(noise->size(3)) + " are not divisible by the patch size " +
                     std::to_string(P));
  return noise->to(torch::kFloat32);
}

}  // namespace

nlohmann::json run_sample_pipeline(const Config& cfg, JobIO io) {
  // Checkpoint mode's keys do not apply to a pipeline (and the other way round: run_sample).
  for (const char* key :
       {"checkpoint", "model", "n", "steps", "shift", "labels", "label", "plot", "latents"})
    if (cfg.is_explicit(key))
      throw ConfigError(cfg.table().find(key)->flag() +
                        " applies to sampling a checkpoint, not a diffusers --base (its steps: "
                        "--rollout-steps; its grid: the scheduler's)");
  if (!cfg.is_set("out")) throw ConfigError("--out: the output directory is required");
  const auto pipeline = pipeline_from(cfg);
  if (!pipeline)
    throw ConfigError("--base " + cfg.text("base") +
                      ": sampling from --base needs a diffusers SD3 pipeline folder (for a "
                      "ramflow checkpoint, use --checkpoint)");
  const torch::Device device = setup_device(cfg);
  const torch::Dtype dtype = dtype_from(cfg);
  torch::Tensor noise;
  if (cfg.is_set("init_noise")) noise = read_init_noise(cfg.text("init_noise"), *pipeline);
  const auto shape = noise.defined()
                         ? std::vector<int64_t>{noise.size(1), noise.size(2), noise.size(3)}
                         : pipeline->latent_shape(cfg.integer("height"), cfg.integer("width"));
  const TaskPtr task = prompt_task_from(cfg, shape);
  const int64_t N = task->condition_count();
  if (noise.defined() && noise.size(0) != N)
    throw InputError(cfg.text("init_noise") + ": holds " + std::to_string(noise.size(0)) +
                     " latents, the embeddings " + std::to_string(N) + " prompts");
  check_dtype_computes(dtype, device, "--dtype " + dtype_name(dtype));
  const fs::path out = cfg.text("out");
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw InputError(out.string() + ": cannot create the output directory: " + ec.message());

  // --- the models: transformer (with a LoRA), VAE ----------------------------------------------
  VelocityFieldPtr model = make_velocity_field(pipeline->transformer_spec(dtype));
  if (cfg.is_set("lora")) model = load_diffusers_lora(cfg.text("lora"), model).ptr();
  model->to(device);
  model->eval();
  DecoderPtr decoder = make_decoder(pipeline->decoder_spec(dtype));
  decoder->to(device);

  // --- Euler with guidance on the scheduler's grid, then the decode -----------------------------
  std::vector<int64_t> full = {N};
  full.insert(full.end(), shape.begin(), shape.end());
  Rng rng(static_cast<uint64_t>(cfg.integer("seed")));
  const auto x1 =
      noise.defined() ? noise.to(device) : rng.randn(full, torch::TensorOptions().device(device));
  const Condition cond = task->conditions(torch::arange(N, torch::kLong)).to(device);
  const double scale = cfg.number("cfg");
  GuidedVelocityImpl guided(*model, scale, task->null_condition().to(device));
  const auto options = SampleOptions()
                           .sampler(cfg.text("sampler"))
                           .steps(cfg.integer("rollout_steps"))
                           .shift(pipeline->shift)
                           .grid("diffusers");
  const auto result = sample(scale != 1.0 ? static_cast<VelocityFieldImpl&>(guided) : *model, x1,
                             cond, options, &rng);
  const auto latents = result.x0.cpu();
  const auto images = ((decode_samples(*decoder, result.x0, 4).cpu() + 1) / 2).clamp(0, 1);
  nlohmann::json prompts = nlohmann::json::array();
  for (int64_t i = 0; i < N; ++i) prompts.push_back(task->condition_text(i));
  const nlohmann::json meta = {{"base", pipeline->dir},
                               {"lora", cfg.is_set("lora") ? cfg.raw("lora") : nullptr},
                               {"cfg", scale},
                               {"steps", cfg.integer("rollout_steps")},
                               {"prompts", prompts}};
  save_safetensors((out / "samples.safetensors").string(),
                   {{"latents", latents}, {"images", images}}, {{"ramflow", meta.dump()}});
  const int64_t cols = std::min<int64_t>(N, 8), rows = (N + cols - 1) / cols;
  auto tiles = images * 2 - 1;  // [-1, 1], padded with white to rows x cols tiles
  if (rows * cols > N)
    tiles = torch::cat(
        {tiles, torch::ones({rows * cols - N, tiles.size(1), tiles.size(2), tiles.size(3)})});
  save_png_grid((out / "samples.png").string(), {tiles}, rows, cols);
  io.log << "wrote " << N << " samples (" << images.size(2) << " x " << images.size(3)
         << " pixels, " << result.nfe << " network evaluations) to " << out.string()
         << "/samples.safetensors and samples.png\n";
  return {{"samples", N}, {"nfe", result.nfe}, {"out", out.string()}};
}

}  // namespace ramflow::jobs
