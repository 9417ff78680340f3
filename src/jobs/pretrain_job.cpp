// `ramflow pretrain`: flow-matching pretraining of a base model on a task, as its own run
// directory. The checkpoint (checkpoints/base.safetensors) can be passed to `ramflow finetune
// --base`.
#include <chrono>
#include <filesystem>

#include <torch/torch.h>

#include "jobs/base_model.h"
#include "jobs/params.h"
#include "jobs/report.h"
#include "jobs/resolve.h"
#include "jobs/run_start.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/guidance.h"
#include "ramflow/html_report.h"
#include "ramflow/image.h"
#include "ramflow/jobs.h"
#include "ramflow/metrics.h"
#include "ramflow/progress.h"
#include "ramflow/run_dir.h"
#include "ramflow/stop.h"

namespace ramflow {

ParamTable pretrain_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/true);
  jobs::add_task_params(t);
  jobs::add_pretrain_params(t);
  t.integer("checkpoint_every", 500,
            "write checkpoints/base.safetensors, the state --resume continues from "
            "(checkpoints/pretrain-state.safetensors) and, for images, plots/samples.png every N "
            "steps; 0 = at the end",
            0, 1 << 30);
  t.text("resume", nullptr,
         "continue the pretraining run in this directory from its last checkpoint, with its own "
         "configuration (flags may change only --pretrain-steps, --checkpoint-every and "
         "--threads)");
  t.flag_only("resume");
  t.group("Evaluation");
  t.integer("eval_samples", 2000, "model and data samples compared at the end", 2, 1 << 22);
  t.integer("eval_steps", 50, "sampler steps for the model samples", 1, 100000);
  t.text(
      "track_reward", "",
      "score samples of the evaluation conditions with this reward at every checkpoint and at "
      "the end (metrics 'reward', plots/reward.png: the words task's OCR legibility); \"\" = off");
  t.integer("track_samples", 64, "samples scored by --track-reward", 1, 1 << 20);
  t.number("track_cfg", 1.0, "classifier-free guidance scale of the tracked samples", 0, 100);
  return t;
}

namespace {

// Grids of images: one row per class (per evaluation condition, at most 8, for a task with prompts:
// held-out words), `per_class` samples of the model from fixed noise, beside data images of each
// (fresh draws of a class; the test split's images of a prompt).
void image_grids(const std::string& path, VelocityFieldImpl& model, const Task& task,
                 int64_t per_class, int64_t steps, torch::Device device) {
  const bool classes = task.num_classes() > 0 || task.condition_count() == 0;
  const int64_t K = classes ? std::max<int64_t>(task.num_classes(), 1)
                            : std::min<int64_t>(8, task.condition_count());
  std::vector<int64_t> shape = {K * per_class};
  for (auto s : task.sample_shape()) shape.push_back(s);
  Rng rng(7);
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  const auto ids = classes ? torch::arange(K) : task.evaluation_conditions(K).id();     // [K]
  const Condition cond = task.conditions(ids.repeat_interleave(per_class)).to(device);  // K n rows
  auto x0 = sample(model, x1, cond, SampleOptions().steps(steps)).x0;
  Condition labels;
  torch::Tensor data;
  if (auto split = classes ? std::nullopt : task.test_split()) {
    // The test images of the K conditions asked for.
    const auto keep = torch::isin(split->cond.id(), ids).nonzero().flatten();
    data = split->x.index_select(0, keep);
    labels = split->cond.index_select(keep);
  } else {
    data = task.sample_data(std::max<int64_t>(200 * K, 2000), rng, {}, &labels);
  }
  jobs::class_grids(path, {data, x0}, {"data", "base model"}, {labels, cond}, task, per_class);
}

// The mean reward of `n` samples of the task's evaluation conditions (fixed noise), guided with
// scale w.
double tracked_reward(VelocityFieldImpl& model, const Task& task, const Reward& reward, int64_t n,
                      int64_t steps, double w, torch::Device device) {
  const Condition cond = task.evaluation_conditions(n);
  std::vector<int64_t> shape = {n};
  for (auto s : task.sample_shape()) shape.push_back(s);
  Rng rng(11);
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  GuidedVelocityImpl guided(model, w, task.null_condition().to(device));
  auto x0 = sample(guided, x1, cond.to(device), SampleOptions().steps(steps)).x0.cpu();
  return reward.score(x0, cond).mean().item<double>();
}

// The curves of a pretraining run: the loss every 10 steps, the tracked reward at checkpoints.
struct Curves {
  std::vector<double> xs, losses, track_xs, track_ys;
  double seconds_before = 0;  // pretraining seconds of the processes before this one
};

// A resumed run: the state checkpoint `path` restored into `p` (model, EMA, optimiser, random
// stream), metrics.jsonl rewound to its step and the curves read back from it. Returns the step.
int64_t restore(const SafetensorsFile& file, const nlohmann::json& meta, const std::string& path,
                jobs::BasePretraining& p, RunDir& run, Curves& curves) {
  const int64_t at = meta["step"].get<int64_t>();
  const NamedTensors tensors = checkpoint_tensors(file, meta, path);
  load_model_tensors(tensors, "model", *p.model, path);
  p.pretrainer->load_state(tensors, at, path);
  for (const auto& line : run.rewind_metrics(at)) {
    const auto step = static_cast<double>(line.value("step", int64_t{0}));
    if (line.contains("loss")) {
      curves.xs.push_back(step);
      curves.losses.push_back(line["loss"].get<double>());
      curves.seconds_before = line.value("seconds", curves.seconds_before);
    }
    if (line.contains("reward")) {
      curves.track_xs.push_back(step);
      curves.track_ys.push_back(line["reward"].get<double>());
    }
  }
  return at;
}

// Low-dimensional tasks: the energy distance between n model samples and n data samples of the
// same conditions (for a conditional task: the data's), and their picture.
double data_distance(VelocityFieldImpl& model, const Task& task, int64_t n, int64_t steps,
                     uint64_t seed, torch::Device device, const std::string& plot) {
  Rng rng(seed);
  std::vector<int64_t> shape = {n};
  for (auto s : task.sample_shape()) shape.push_back(s);
  auto x1 = rng.randn(shape, torch::TensorOptions().device(device));
  Condition cond;
  auto data = task.sample_data(n, rng, {}, &cond);
  auto samples = sample(model, x1, cond.to(device), SampleOptions().steps(steps)).x0.cpu();
  sample_panels(plot, {jobs::panel("data", data), jobs::panel("base model", samples)});
  return energy_distance(samples, data);
}

}  // namespace

nlohmann::json run_pretrain(const Config& cfg_in, JobIO io) {
  // --resume RUN: RUN's own configuration; only these keys may change.
  const bool resuming = cfg_in.is_set("resume");
  Config cfg = resuming
                   ? jobs::resume_config(cfg_in, {"pretrain_steps", "checkpoint_every", "threads"})
                   : cfg_in;
  jobs::apply_presets(cfg);
  if (!cfg.is_set("out"))
    throw ConfigError(
        "--out: the run directory is required (a flag: a config file's out is not used)");
  if (cfg.is_explicit("base"))
    throw ConfigError("--base: pretrain trains a new base model; drop --base");
  const torch::Device device = jobs::setup_device(cfg);
  TaskPtr task = jobs::task_from(cfg);
  make_velocity_field(jobs::model_spec_from(cfg, *task));  // validate before any compute
  RewardPtr tracked;
  if (!cfg.text("track_reward").empty()) {
    if (task->condition_count() == 0)
      throw ConfigError("--track-reward: task '" + task->name() +
                        "' has no conditions to ask for (the tracked samples are of its "
                        "evaluation conditions)");
    tracked = make_reward({{"type", cfg.text("track_reward")}}, task->dim());
  }
  const int64_t steps = cfg.integer("pretrain_steps");
  std::shared_ptr<const SafetensorsFile> state_file;
  nlohmann::json state_meta;
  RunDir run = resuming ? RunDir::open(cfg.text("out"))
                        : RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  const std::string state_path = run.checkpoint("pretrain-state");
  if (resuming) {
    if (!std::filesystem::exists(state_path))
      throw InputError(run.path() + ": no pretraining checkpoint to resume from (" + state_path +
                       ")");
    state_file = std::make_shared<const SafetensorsFile>(load_safetensors(state_path));
    state_meta = read_checkpoint_meta(*state_file, state_path);
    if (state_meta.value("step", int64_t{0}) >= steps)
      throw ConfigError("--resume: " + run.path() + " is at step " +
                        std::to_string(state_meta.value("step", int64_t{0})) +
                        "; --pretrain-steps " + std::to_string(steps) + " asks for no more");
  }
  run.write_config(cfg.values(), cfg.given());

  // --- the model and its pretraining, continued where the state checkpoint left it -------------
  jobs::BasePretraining p = jobs::start_pretraining(cfg, *task, device);
  Pretrainer& pretrainer = *p.pretrainer;
  Curves curves;
  auto &xs = curves.xs, &losses = curves.losses, &track_xs = curves.track_xs,
       &track_ys = curves.track_ys;
  if (state_file) {
    const int64_t at = restore(*state_file, state_meta, state_path, p, run, curves);
    state_file.reset();
    io.log << "resumed " << run.path() << " at step " << at << " of " << steps << "\n";
  }

  const bool images = task->sample_shape().size() == 3;
  const int64_t every = cfg.integer("checkpoint_every");
  const int64_t grid_steps = cfg.integer("eval_steps");
  const int64_t first = pretrainer.steps_done();
  Progress bar("pretrain", steps, io.log, io.tty, first);
  // The tracked reward of `weights` at `step`: a metrics line and plots/reward.png.
  auto track = [&](const VelocityFieldImpl& weights, int64_t step) {
    if (!tracked) return;
    auto snapshot = clone_velocity_field(weights);
    snapshot->eval();
    const double r = tracked_reward(*snapshot, *task, *tracked, cfg.integer("track_samples"),
                                    grid_steps, cfg.number("track_cfg"), device);
    run.append_metrics({{"step", step}, {"reward", r}});
    track_xs.push_back(static_cast<double>(step));
    track_ys.push_back(r);
    line_plot(run.plot("reward"), cfg.text("track_reward") + " reward of samples", "step",
              "mean reward", {{"reward", track_xs, track_ys, palette(1) + "2"}});
    bar.note("step " + std::to_string(step) + ": " + cfg.text("track_reward") + " reward " +
             jobs::fixed(r, 3) + " (" + std::to_string(cfg.integer("track_samples")) + " samples)");
  };
  // The weights the run ends with (the EMA when pretrain_ema > 0) as the base model, and the whole
  // state (model, EMA, optimiser) for --resume: each written atomically.
  auto save_state = [&](const PretrainRecord& r) {
    save_checkpoint(state_path, {{"model", p.model.get()}}, {{"step", r.step}}, pretrainer.state());
  };
  auto checkpoint = [&](const PretrainRecord& r) {
    save_checkpoint(run.checkpoint("base"), {{"base", r.weights}},
                    {{"config", cfg.values()}, {"step", r.step}, {"loss", r.loss}});
    save_state(r);
  };
  PretrainRecord last;
  int signal = 0;
  while (pretrainer.steps_done() < steps) {
    if ((signal = stop_signal()) != 0) break;
    last = pretrainer.step();
    last.seconds += curves.seconds_before;
    bar.update(last.step, "loss " + jobs::fixed(last.loss));
    if (last.step % 10 == 0 || last.step == steps) {
      run.append_metrics({{"step", last.step}, {"loss", last.loss}, {"seconds", last.seconds}});
      xs.push_back(static_cast<double>(last.step));
      losses.push_back(last.loss);
    }
    if (every > 0 && last.step % every == 0 && last.step < steps) {
      checkpoint(last);
      if (images) {
        auto snapshot = clone_velocity_field(*last.weights);
        snapshot->eval();
        image_grids(run.plot("samples"), *snapshot, *task, 8, grid_steps, device);
      }
      line_plot(run.plot("loss"), "flow-matching loss", "step", "loss",
                {{"loss", xs, losses, palette(0) + "2"}});
      track(*last.weights, last.step);
    }
  }
  const std::string resume_hint = "ramflow pretrain --resume " + run.path();
  if (signal != 0) {
    bar.stop(pretrainer.steps_done());
    const bool saved = every > 0 && last.step % every == 0;  // by the loop, at this step
    if (last.step > 0 && !saved) checkpoint(last);
    io.log << signal_name(signal) << ": stopped at step " << pretrainer.steps_done() << " of "
           << steps << "; checkpoint " << state_path << "; continue with: " << resume_hint << "\n";
    return {{"task", task->name()},
            {"stopped", signal_name(signal)},
            {"step", pretrainer.steps_done()},
            {"checkpoint", state_path}};
  }
  bar.finish("loss " + jobs::fixed(last.loss));
  save_state(last);  // the state at the last step (a longer --pretrain-steps continues from it)
  pretrainer.finish();
  const VelocityFieldPtr& model = p.model;
  track(*model, steps);
  save_checkpoint(run.checkpoint("base"), {{"base", model.get()}},
                  {{"config", cfg.values()}, {"step", steps}, {"final_loss", last.loss}});
  line_plot(run.plot("loss"), "flow-matching loss", "step", "loss",
            {{"loss", xs, losses, palette(0) + "2"}});
  nlohmann::json summary = {{"task", task->name()},
                            {"steps", steps},
                            {"seconds", last.seconds},
                            {"final_loss", last.loss},
                            {"parameters", parameter_count(*model)},
                            {"checkpoint", "checkpoints/base.safetensors"}};
  if (!track_ys.empty()) summary["reward"] = track_ys.back();
  std::ostream& res = io.results();
  res << "final loss " << jobs::fixed(last.loss, 4);
  if (images) {
    image_grids(run.plot("samples"), *model, *task, 8, grid_steps, device);
    res << "; samples per class: plots/samples.png (data left, model right)";
  } else {
    const int64_t n = cfg.integer("eval_samples");
    summary["data_distance"] =
        data_distance(*model, *task, n, cfg.integer("eval_steps"),
                      static_cast<uint64_t>(cfg.integer("seed")) + 1, device, run.plot("samples"));
    res << ", energy distance to the data " << jobs::fixed(summary["data_distance"], 4) << " (" << n
        << " samples)";
  }
  run.write_summary(summary);
  write_run_report(run.path());
  res << "\nrun directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
