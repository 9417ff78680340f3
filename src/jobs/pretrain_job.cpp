// `ramflow pretrain`: flow-matching pretraining of a base model on a task, as its own run directory.
// The checkpoint (checkpoints/base.safetensors) can be passed to `ramflow finetune --base`.
#include <chrono>

#include <torch/torch.h>

#include "jobs/setup.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/metrics.h"
#include "ramflow/run_dir.h"

namespace ramflow {

ParamTable pretrain_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/true);
  jobs::add_task_params(t);
  jobs::add_pretrain_params(t);
  t.group("Evaluation");
  t.integer("eval_samples", 2000, "model and data samples compared at the end", 2, 1 << 22);
  t.integer("eval_steps", 50, "sampler steps for the model samples", 1, 100000);
  return t;
}

nlohmann::json run_pretrain(const Config& cfg, JobIO io) {
  if (!cfg.is_set("out"))
    throw ConfigError("--out: the run directory is required (a flag: a config file's out is not used)");
  if (cfg.is_set("base")) throw ConfigError("--base: pretrain trains a new base model; drop --base");
  const torch::Device device = jobs::setup_device(cfg);
  TaskPtr task = jobs::task_from(cfg);
  make_velocity_field(jobs::model_spec_from(cfg, *task));  // validate before any compute
  RunDir run = RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  run.write_config(cfg.values());

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
  });
  save_checkpoint(run.checkpoint("base"), {{"base", model.get()}},
                  {{"config", cfg.values()}, {"final_loss", last_loss}});

  // Compare model samples with fresh data samples.
  const int64_t n = cfg.integer("eval_samples");
  Rng rng(static_cast<uint64_t>(cfg.integer("seed")) + 1);
  std::vector<int64_t> shape = {n};
  for (auto s : task->sample_shape()) shape.push_back(s);
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  auto samples = sample(*model, x1, {}, SampleOptions().steps(cfg.integer("eval_steps"))).x0.cpu();
  auto data = task->sample_data(n, rng);
  const double distance = energy_distance(samples, data);
  sample_panels(run.plot("samples"), {jobs::panel("data", data), jobs::panel("base model", samples)});
  line_plot(run.plot("loss"), "flow-matching loss", "step", "loss", {{"loss", xs, losses, palette(0) + "2"}});
  nlohmann::json summary = {{"task", task->name()},
                            {"steps", cfg.integer("pretrain_steps")},
                            {"seconds", seconds},
                            {"final_loss", last_loss},
                            {"data_distance", distance},
                            {"parameters", parameter_count(*model)},
                            {"checkpoint", "checkpoints/base.safetensors"}};
  run.write_summary(summary);
  io.log << "final loss " << jobs::fixed(last_loss, 4) << ", energy distance to the data "
         << jobs::fixed(distance, 4) << " (" << n << " samples)\nrun directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
