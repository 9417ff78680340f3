// `ramflow sample`: endpoints from a checkpoint, written as CSV (one sample per row), safetensors
// (a tensor "samples" [n, ...], and "labels" [n] for a conditional model) or .npy (float32 [n,
// ...], and the labels as int64 [n] in FILE.labels.npy beside it), chosen by the output's
// extension; optionally a PNG of them (a scatter plot for points, a grid for images, one row per
// class).
#include <fstream>
#include <iomanip>

#include <torch/torch.h>

#include "jobs/params.h"
#include "jobs/report.h"
#include "jobs/resolve.h"
#include "jobs/run_start.h"
#include "jobs/sample_pipeline.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/guidance.h"
#include "ramflow/image.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/labelled_grid.h"
#include "ramflow/npy.h"
#include "ramflow/run_dir.h"

namespace ramflow {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

namespace jobs {

SampleResult sample_with(const Config& cfg, VelocityFieldImpl& model, const Task& task,
                         const torch::Tensor& x1, const Condition& cond, Rng& rng) {
  GuidedVelocityImpl guided(model, cfg.number("cfg"), task.null_condition());
  VelocityFieldImpl& v = cond.defined() && cfg.number("cfg") != 1.0 ? guided : model;
  return sample(v, x1, cond,
                SampleOptions()
                    .sampler(cfg.text("sampler"))
                    .steps(cfg.integer("steps"))
                    .shift(cfg.number("shift")),
                &rng);
}

}  // namespace jobs

ParamTable sample_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/false);
  t.group("Sampling");
  t.text("checkpoint", nullptr, "checkpoint to sample from (required)");
  t.text("model", nullptr, "model inside the checkpoint (default: policy, else base)");
  t.integer("n", 1000, "number of samples", 1, 1 << 24);
  t.integer("steps", 50, "sampler steps", 1, 100000);
  t.text("sampler", "euler", "ODE sampler", samplers().names());
  t.number("shift", 1.0, "grid shift s", 0, 1000, true);
  t.text("plot", nullptr, "also write a PNG of the samples here");
  t.text("labels", "all", "conditional models: 'all' (the classes in turn) or one class K");
  t.integer("label", -1, "conditional models: one class K (the same as --labels K)", -1, 1 << 20);
  t.number("cfg", 1.0, "classifier-free guidance scale (conditional models)", 0, 100);
  t.boolean(
      "latents", false,
      "write the model's own samples, not decoded ones (checkpoints of runs with a --decoder)");
  t.group("A diffusers SD3 pipeline (--base DIR; --out is then a directory)");
  t.text("base", nullptr,
         "a diffusers SD3 / SD3.5 pipeline folder: samples every prompt of --prompt-embeds once");
  t.text("prompt_embeds", nullptr,
         "the prompts' embeddings (python/encode_prompts.py): prompt_embeds, pooled_prompt_embeds, "
         "negative_prompt_embeds, negative_pooled_prompt_embeds");
  t.text("init_noise", nullptr, "initial latents: a safetensors file with \"noise\" [N, C, h, w]");
  t.text("lora", nullptr, "a LoRA in diffusers' format (pytorch_lora_weights.safetensors)");
  t.integer("rollout_steps", 28, "Euler steps on the scheduler's grid", 1, 100000);
  t.text("dtype", "float32", "the dtype the transformer and the VAE compute in",
         {"float32", "bfloat16", "float16"});
  t.integer("height", 0, "image height in pixels (0 = the model's default)", 0, 1 << 16);
  t.integer("width", 0, "image width in pixels (0 = the model's default)", 0, 1 << 16);
  t.group(
      "Text prompts (--checkpoint of a task that takes them, the words task; --out is then a "
      "directory)");
  t.text("prompts", nullptr,
         "the prompts, one per line or JSON lines {\"prompt\": ...}; with --base: their text "
         "(optional)");
  t.integer("per_prompt", 1, "--prompts with --checkpoint: samples of each prompt", 1, 1 << 20);
  return t;
}

nlohmann::json run_sample(const Config& cfg, JobIO io) {
  if (cfg.is_set("base")) {
    if (cfg.is_explicit("per_prompt"))
      throw ConfigError(
          "--per-prompt applies to sampling a --checkpoint (--base samples each "
          "prompt of --prompt-embeds once)");
    return jobs::run_sample_pipeline(cfg, io);
  }
  for (const char* key :
       {"prompt_embeds", "init_noise", "lora", "rollout_steps", "dtype", "height", "width"})
    if (cfg.is_explicit(key))
      throw ConfigError(cfg.table().find(key)->flag() + " applies to sampling a diffusers --base");
  if (!cfg.is_set("checkpoint"))
    throw ConfigError("--checkpoint: required (or --base, a diffusers pipeline folder)");
  if (cfg.is_set("prompts")) return jobs::run_sample_prompts(cfg, io);
  if (cfg.is_explicit("per_prompt"))
    throw ConfigError("--per-prompt applies to sampling --prompts");
  if (!cfg.is_set("out"))
    throw ConfigError("--out: the output file is required (.csv or .safetensors)");
  const std::string out = cfg.text("out");
  if (!ends_with(out, ".csv") && !ends_with(out, ".safetensors") && !ends_with(out, ".npy"))
    throw ConfigError("--out: '" + out + "' must end in .csv, .safetensors or .npy");
  prepare_output_file(out, "--out");
  if (cfg.is_set("plot")) prepare_output_file(cfg.text("plot"), "--plot");
  int64_t fixed_label = cfg.integer("label");
  if (cfg.text("labels") != "all") {
    try {
      size_t used = 0;
      fixed_label = std::stoll(cfg.text("labels"), &used);
      if (used != cfg.text("labels").size() || fixed_label < 0) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw ConfigError("--labels: 'all' or a class number, got '" + cfg.text("labels") + "'");
    }
  }
  const torch::Device device = jobs::setup_device(cfg);
  const std::string path = cfg.text("checkpoint");
  const auto meta = read_checkpoint_meta(path);
  const auto run_cfg = meta.value("config", nlohmann::json());
  if (run_cfg.value("task", std::string()) == "prompts")
    throw ConfigError("--checkpoint " + path +
                      ": a run on a diffusers pipeline is sampled from the pipeline with the run's "
                      "LoRA: ramflow sample --base " +
                      run_cfg.value("base", std::string("DIR")) +
                      " --prompt-embeds FILE --lora RUN/lora/pytorch_lora_weights.safetensors");
  // The sample shape comes from the task the checkpoint was trained on.
  TaskPtr task = jobs::task_of_run(run_cfg, path);
  const std::string name = jobs::pick_model(meta, cfg.raw("model"), path);
  auto model = jobs::load_model(path, meta, name);
  model->to(device);
  model->eval();
  const int64_t n = cfg.integer("n"), K = task->num_classes();
  const bool conditional = task->condition_count() > 0;  // classes, or prompts (words)
  if (!conditional && cfg.number("cfg") != 1.0)
    throw ConfigError("--cfg applies to conditional models; task '" + task->name() + "' is not");
  if (K == 0 && fixed_label >= 0)
    throw ConfigError("--labels and --label apply to class-conditional models; task '" +
                      task->name() + "' is not" +
                      (conditional ? " (sample its prompts with --prompts FILE)" : ""));
  if (fixed_label >= K && K > 0)
    throw ConfigError("--labels: class " + std::to_string(fixed_label) + " is outside the task's " +
                      std::to_string(K) + " classes");
  std::vector<int64_t> shape = {n};
  for (auto s : task->sample_shape()) shape.push_back(s);
  Rng rng(static_cast<uint64_t>(cfg.integer("seed")));
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  // The classes in turn (the task's evaluation conditions), or the one asked for.
  const Condition cond = fixed_label >= 0
                             ? task->conditions(torch::full({n}, fixed_label, torch::kLong))
                             : task->evaluation_conditions(n);
  const torch::Tensor labels = cond.defined() ? cond.id() : torch::Tensor();  // [n], or undefined
  auto result = jobs::sample_with(cfg, *model, *task, x1, cond.to(device), rng);
  // Decoded by the decoder the checkpoint records (decoder.h), unless the latents are asked for.
  const DecoderPtr decoder = decoder_from_meta(meta);
  auto x0 = decoder && !cfg.boolean("latents") ? decode_samples(*decoder, result.x0).cpu()
                                               : result.x0.cpu();
  if (ends_with(out, ".csv")) {
    auto flat = x0.reshape({x0.size(0), -1}).to(torch::kDouble).contiguous();
    std::ostringstream s;
    s << std::setprecision(9);
    const double* p = flat.data_ptr<double>();
    for (int64_t i = 0; i < flat.size(0); ++i) {
      for (int64_t j = 0; j < flat.size(1); ++j) s << (j ? "," : "") << p[i * flat.size(1) + j];
      s << "\n";
    }
    write_file_atomic(out, s.str());
  } else if (ends_with(out, ".npy")) {
    write_npy(out, x0.to(torch::kFloat));
    if (labels.defined()) write_npy(out.substr(0, out.size() - 4) + ".labels.npy", labels);
  } else {
    std::vector<std::pair<std::string, torch::Tensor>> tensors = {{"samples", x0}};
    if (labels.defined()) tensors.emplace_back("labels", labels);
    save_safetensors(out, tensors,
                     {{"ramflow", nlohmann::json{{"checkpoint", path}, {"model", name}}.dump()}});
  }
  if (cfg.is_set("plot")) {
    if (x0.dim() == 4 && fixed_label < 0 && K > 0) {
      jobs::class_grids(cfg.text("plot"), {x0}, {name}, {cond}, *task,
                        std::min<int64_t>(10, std::max<int64_t>(n / K, 1)));
    } else if (x0.dim() == 4) {
      const int64_t cols = std::min<int64_t>(n, 10), rows = std::min<int64_t>(n / cols, 10);
      save_labelled_grids(cfg.text("plot"), {x0.narrow(0, 0, rows * cols)}, {name}, {}, rows, cols);
    } else {
      sample_panels(cfg.text("plot"), {jobs::panel(name, x0)});
    }
  }
  io.log << "wrote " << x0.size(0) << " samples of model '" << name << "' to " << out << " ("
         << result.nfe << " network evaluations)\n";
  return {{"samples", x0.size(0)}, {"model", name}, {"nfe", result.nfe}, {"out", out}};
}

}  // namespace ramflow
