// `ramflow pretrain`: flow-matching pretraining of a base model on a task, as its own run
// directory. The checkpoint (checkpoints/base.safetensors) can be passed to `ramflow finetune
// --base`.
#include <chrono>

#include <torch/torch.h>

#include "jobs/base_model.h"
#include "jobs/params.h"
#include "jobs/report.h"
#include "jobs/resolve.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/image.h"
#include "ramflow/jobs.h"
#include "ramflow/metrics.h"
#include "ramflow/run_dir.h"

namespace ramflow {

ParamTable pretrain_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/true);
  jobs::add_task_params(t);
  jobs::add_pretrain_params(t);
  t.integer("checkpoint_every", 500,
            "write checkpoints/base.safetensors (and, for images, plots/samples.png) every N "
            "steps; 0 = at the end",
            0, 1 << 30);
  t.group("Evaluation");
  t.integer("eval_samples", 2000, "model and data samples compared at the end", 2, 1 << 22);
  t.integer("eval_steps", 50, "sampler steps for the model samples", 1, 100000);
  return t;
}

namespace {

// Per-class grids of images: one row per class, `per_class` samples of the model from fixed noise,
// beside the same number of data images of each class.
void image_grids(const std::string& path, VelocityFieldImpl& model, const Task& task,
                 int64_t per_class, int64_t steps, torch::Device device) {
  const int64_t K = std::max<int64_t>(task.num_classes(), 1);
  std::vector<int64_t> shape = {K * per_class};
  for (auto s : task.sample_shape()) shape.push_back(s);
  Rng rng(7);
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  const Condition cond =
      task.conditions(torch::arange(K).repeat_interleave(per_class)).to(device);  // K n rows
  auto x0 = sample(model, x1, cond, SampleOptions().steps(steps)).x0;
  // Data: the first per_class images of each class among fresh draws.
  Condition labels;
  auto data = task.sample_data(std::max<int64_t>(200 * K, 2000), rng, {}, &labels);
  jobs::class_grids(path, {data, x0}, {labels, cond}, task, per_class);
}

}  // namespace

nlohmann::json run_pretrain(const Config& cfg_in, JobIO io) {
  Config cfg = cfg_in;
  jobs::apply_presets(cfg);
  if (!cfg.is_set("out"))
    throw ConfigError(
        "--out: the run directory is required (a flag: a config file's out is not used)");
  if (cfg.is_explicit("base"))
    throw ConfigError("--base: pretrain trains a new base model; drop --base");
  const torch::Device device = jobs::setup_device(cfg);
  TaskPtr task = jobs::task_from(cfg);
  make_velocity_field(jobs::model_spec_from(cfg, *task));  // validate before any compute
  RunDir run = RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  run.write_config(cfg.values());

  const bool images = task->sample_shape().size() == 3;
  const int64_t every = cfg.integer("checkpoint_every");
  const int64_t grid_steps = cfg.integer("eval_steps");
  std::vector<double> xs, losses;
  double seconds = 0, last_loss = 0;
  auto model = jobs::pretrain_base(cfg, *task, device, io, [&](const PretrainRecord& r) {
    seconds = r.seconds;
    last_loss = r.loss;
    if (r.step % 10 == 0 || r.step == cfg.integer("pretrain_steps")) {
      run.append_metrics({{"step", r.step}, {"loss", r.loss}, {"seconds", r.seconds}});
      xs.push_back(static_cast<double>(r.step));
      losses.push_back(r.loss);
    }
    if (every > 0 && r.step % every == 0 && r.step < cfg.integer("pretrain_steps")) {
      // A snapshot of the weights the run will end with (the EMA when pretrain_ema > 0),
      // atomically.
      save_checkpoint(run.checkpoint("base"), {{"base", r.weights}},
                      {{"config", cfg.values()}, {"step", r.step}, {"loss", r.loss}});
      if (images) {
        auto snapshot = clone_velocity_field(*r.weights);
        snapshot->eval();
        image_grids(run.plot("samples"), *snapshot, *task, 8, grid_steps, device);
      }
      line_plot(run.plot("loss"), "flow-matching loss", "step", "loss",
                {{"loss", xs, losses, palette(0) + "2"}});
    }
  });
  save_checkpoint(run.checkpoint("base"), {{"base", model.get()}},
                  {{"config", cfg.values()},
                   {"step", cfg.integer("pretrain_steps")},
                   {"final_loss", last_loss}});
  line_plot(run.plot("loss"), "flow-matching loss", "step", "loss",
            {{"loss", xs, losses, palette(0) + "2"}});
  nlohmann::json summary = {{"task", task->name()},
                            {"steps", cfg.integer("pretrain_steps")},
                            {"seconds", seconds},
                            {"final_loss", last_loss},
                            {"parameters", parameter_count(*model)},
                            {"checkpoint", "checkpoints/base.safetensors"}};
  io.log << "final loss " << jobs::fixed(last_loss, 4);
  if (images) {
    image_grids(run.plot("samples"), *model, *task, 8, grid_steps, device);
    io.log << "; samples per class: plots/samples.png (data left, model right)";
  } else {
    // Compare model samples with fresh data samples.
    const int64_t n = cfg.integer("eval_samples");
    Rng rng(static_cast<uint64_t>(cfg.integer("seed")) + 1);
    std::vector<int64_t> shape = {n};
    for (auto s : task->sample_shape()) shape.push_back(s);
    auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
    auto samples =
        sample(*model, x1, {}, SampleOptions().steps(cfg.integer("eval_steps"))).x0.cpu();
    auto data = task->sample_data(n, rng);
    summary["data_distance"] = energy_distance(samples, data);
    sample_panels(run.plot("samples"),
                  {jobs::panel("data", data), jobs::panel("base model", samples)});
    io.log << ", energy distance to the data " << jobs::fixed(summary["data_distance"], 4) << " ("
           << n << " samples)";
  }
  run.write_summary(summary);
  io.log << "\nrun directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
