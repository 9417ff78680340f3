// `ramflow sample --checkpoint CKPT --prompts FILE --out DIR`: samples of a checkpoint whose task
// takes text prompts (the words task: any 1-10 letters A-Z), each prompt --per-prompt times from
// seeded noise, guided with --cfg. Writes DIR/samples.safetensors ("images" [N, C, H, W] in [0, 1],
// float32, as `sample --base` writes; prompt i's samples are rows i k .. i k + k - 1; the prompts
// in the metadata) and DIR/samples.png (one row per prompt, the first 10 prompts).
#include <filesystem>

#include <torch/torch.h>

#include "jobs/report.h"
#include "jobs/resolve.h"
#include "jobs/run_start.h"
#include "jobs/sample_pipeline.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/prompts_file.h"
#include "ramflow/safetensors.h"

namespace ramflow::jobs {

namespace fs = std::filesystem;

nlohmann::json run_sample_prompts(const Config& cfg, JobIO io) {
  for (const char* key : {"labels", "label", "n"})
    if (cfg.is_explicit(key))
      throw ConfigError(cfg.table().find(key)->flag() +
                        " does not apply with --prompts (each prompt is sampled --per-prompt "
                        "times)");
  if (!cfg.is_set("out")) throw ConfigError("--out: the output directory is required");
  // Everything is checked before any compute: the prompts, the checkpoint, its task.
  std::vector<std::string> texts;
  for (const auto& p : read_prompts(cfg.text("prompts"))) texts.push_back(p.text);
  const std::string path = cfg.text("checkpoint");
  const auto meta = read_checkpoint_meta(path);
  TaskPtr task = task_of_run(meta.value("config", nlohmann::json()), path);
  Condition cond;
  try {
    cond = task->prompt_conditions(texts);
  } catch (const ConfigError& e) {
    throw ConfigError("--prompts " + cfg.text("prompts") + ": " + e.what());
  }
  if (task->sample_shape().size() != 3)  // images [C, H, W] (or latents of images)
    throw ConfigError("--prompts: task '" + task->name() + "' does not make images");
  const std::string name = pick_model(meta, cfg.raw("model"), path);
  const fs::path out = cfg.text("out");
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw InputError(out.string() + ": cannot create the output directory: " + ec.message());

  const torch::Device device = setup_device(cfg);
  auto model = load_model(path, meta, name);
  model->to(device);
  model->eval();
  const int64_t k = cfg.integer("per_prompt");
  cond = cond.repeat_interleave(k);  // [P] -> [P k]: prompt i on rows i k .. i k + k - 1
  std::vector<int64_t> shape = {cond.size()};
  for (auto s : task->sample_shape()) shape.push_back(s);
  Rng rng(static_cast<uint64_t>(cfg.integer("seed")));
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  auto result = sample_with(cfg, *model, *task, x1, cond.to(device), rng);
  const DecoderPtr decoder = decoder_from_meta(meta);
  auto x0 = (decoder ? decode_samples(*decoder, result.x0) : result.x0).cpu();  // [N, C, H, W]
  const auto images = ((x0 + 1) / 2).clamp(0, 1);                               // [-1, 1] -> [0, 1]
  const nlohmann::json info = {{"checkpoint", path},         {"model", name},
                               {"prompts", texts},           {"per_prompt", k},
                               {"cfg", cfg.number("cfg")},   {"steps", cfg.integer("steps")},
                               {"seed", cfg.integer("seed")}};
  save_safetensors((out / "samples.safetensors").string(), {{"images", images}},
                   {{"ramflow", info.dump()}});
  class_grids((out / "samples.png").string(), {x0}, {name}, {cond}, *task,
              std::min<int64_t>(k, 10));
  io.log << "wrote " << cond.size() << " samples of " << texts.size() << " prompts (model '" << name
         << "', " << result.nfe << " network evaluations) to " << out.string()
         << "/samples.safetensors and samples.png\n";
  return {{"samples", cond.size()},
          {"prompts", texts.size()},
          {"model", name},
          {"nfe", result.nfe},
          {"out", out.string()}};
}

}  // namespace ramflow::jobs
