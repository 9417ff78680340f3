// `ramflow finetune`: post-train the base model against a reward and measure it against the exact target.
//   1. resolve and validate everything (task, reward, method) before any compute
//   2. base model (given, cached or pretrained) -> exact target p* ∝ p_ref exp(m r) from its samples
//   3. the shared Trainer loop, with a progress bar, metrics.jsonl and periodic evaluations
//   4. final evaluation, checkpoint, plots, summary.json (last), and a before/after table
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <utility>

#include <torch/torch.h>

#include "jobs/run_driver.h"
#include "jobs/setup.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/lora.h"
#include "ramflow/method.h"
#include "ramflow/progress.h"
#include "ramflow/run_dir.h"
#include "ramflow/stop.h"
#include "ramflow/trainer.h"
#include "ramflow/training_checkpoint.h"

namespace ramflow {

ParamTable finetune_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/true);
  jobs::add_task_params(t);
  jobs::add_pretrain_params(t);
  jobs::add_reward_params(t, /*with_defaults=*/true);
  jobs::add_training_params(t);
  jobs::add_eval_params(t);
  jobs::add_checkpoint_params(t);
  t.integer("eval_every", 50, "evaluate every N steps for the curves (0 = only before and after)", 0,
            100000000);
  t.integer("eval_curve_samples", 1000, "endpoints per intermediate evaluation", 2, 1 << 22);
  return t;
}

namespace {

nlohmann::json eval_json(const EvalResult& e) {
  nlohmann::json j = {{"reward", e.reward_mean},
                      {"reward_std", e.reward_std},
                      {"distance", e.distance},
                      {"kl_to_base", jobs::json_number(e.kl_to_base)},
                      {"kl_to_base_se", jobs::json_number(e.kl_to_base_se)}};
  if (e.mode_masses.defined()) j["mode_masses"] = jobs::to_vector(e.mode_masses);
  if (!e.reward_terms.empty()) j["reward_terms"] = e.reward_terms;  // each named part of the reward
  if (e.image) {
    j["accuracy"] = e.image->accuracy;
    j["frechet_distance"] = e.image->frechet_distance;
    nlohmann::json per_class = nlohmann::json::array();
    for (double f : e.image->frechet_per_class) per_class.push_back(jobs::json_number(f));
    j["frechet_distance_per_class"] = per_class;
    j["diversity"] = e.image->diversity;
    j["mean_intensity"] = e.image->mean_intensity;
    j["saturated_fraction"] = e.image->saturated_fraction;
    j["edge_density"] = e.image->edge_density;
  } else {
    j["diversity"] = e.diversity;
  }
  return j;
}

std::string masses_text(const torch::Tensor& m) {
  std::string s;
  for (double v : jobs::to_vector(m)) {
    if (!s.empty()) s += ' ';
    s += jobs::fixed(v, 2);
  }
  return s;
}

// The KL estimate with its standard error; a clearly negative one (a KL is >= 0) is the likelihood ODE's
// failure (too few steps, or Hutchinson's probes in high dimension), and is flagged as such.
std::string kl_text(double kl, double se) {
  std::string s = jobs::fixed(kl);
  if (se > 0) s += " ± " + jobs::fixed(se);
  if (kl + 2 * se < 0) s += " (estimator failed)";
  return s;
}

}  // namespace

nlohmann::json run_finetune(const Config& cfg_in, JobIO io) {
  const auto wall_start = std::chrono::steady_clock::now();
  // --- 1. resolve and validate --------------------------------------------------------------------
  // --resume RUN: RUN's own configuration; only these keys may change.
  const bool resuming = cfg_in.is_set("resume");
  Config cfg = resuming ? jobs::resume_config(cfg_in, {"steps", "checkpoint_every", "keep_checkpoints", "threads"})
                        : cfg_in;
  const jobs::RunBasics basics = jobs::resolve_basics(cfg);
  const torch::Device& device = basics.device;
  const TaskPtr& task = basics.task;
  const RewardPtr& reward = basics.reward;
  const double m = basics.multiplier;
  const MethodInfo& method_info = methods().get(cfg.text("method"));
  cfg.apply_defaults(method_info.preset);  // the method's tuned defaults, unless given explicitly
  jobs::apply_task_preset(cfg);            // then the task's, which win: presets tuned on 2-D data do not carry
  check_method_keys(cfg, {cfg.text("method")});
  MethodPtr method = method_info.make(cfg);
  Trainer::check(jobs::trainer_options_from(cfg, *task), *method, *reward);
  jobs::check_model(cfg, *task);

  // --- 2. run directory, base model and exact target -----------------------------------------------
  jobs::RunStart start =
      resuming ? jobs::reopen_run(cfg, device, io) : jobs::start_run(cfg, *task, device, io);
  RunDir& run = start.run;
  const VelocityFieldPtr& base = start.base;
  io.log << "exact target: pool of " << cfg.integer("eval_pool") << " base samples, weights exp("
         << m << " r)\n";
  Evaluator evaluator(task, reward, m, *base, jobs::eval_options_from(cfg));
  const ExactTarget& target = evaluator.target();
  io.log << "  on the pool: base reward " << jobs::fixed(target.reward_base) << ", reward_optimal "
         << jobs::fixed(target.reward_optimal) << ", effective sample size " << jobs::fixed(target.ess, 0);
  if (target.closed_form)
    io.log << ", closed form on the data " << jobs::fixed(target.reward_optimal_closed_form);
  io.log << "\n";
  if (target.ess < 100)
    io.log << "  warning: effective sample size below 100; raise --eval-pool or lower --multiplier\n";
  EvalResult before = evaluator.evaluate(*base);
  before.kl_to_base = before.kl_to_base_se = 0.0;  // the base itself

  // --- 3. training ---------------------------------------------------------------------------------
  auto [policy, ref] = jobs::policy_from(cfg, base);
  const int64_t steps = cfg.integer("steps");
  Trainer trainer(policy, ref, reward, std::move(method), jobs::trainer_options_from(cfg, *task),
                  jobs::condition_source(task));
  const nlohmann::json ckpt_meta = {{"config", cfg.values()},
                                    {"method", trainer.method().name()},
                                    {"method_options", trainer.method().options()}};
  CheckpointSeries series(run.file("checkpoints"), cfg.integer("keep_checkpoints"));
  // Intermediate evaluations on the first eval_curve_samples of the fixed noise, for the curves.
  std::vector<double> curve_step, curve_reward, curve_distance, batch_step, batch_reward;
  double eval_seconds = 0;
  auto curve_eval = [&](int64_t step, VelocityFieldImpl& model, bool final = false) {
    const auto t0 = std::chrono::steady_clock::now();
    EvalResult e = evaluator.evaluate(model, cfg.integer("eval_curve_samples"));
    eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    curve_step.push_back(static_cast<double>(step));
    curve_reward.push_back(e.reward_mean);
    curve_distance.push_back(e.distance);
    nlohmann::json line = {{"eval_step", step}, {"reward", e.reward_mean}, {"distance", e.distance}};
    if (final) line["final"] = true;
    run.append_metrics(line);
  };
  bool evaluated_at_start = true;
  if (resuming) {
    // The trainer as the checkpoint left it; metrics.jsonl and the curves up to its step.
    const jobs::Resumed resumed = jobs::resume(trainer, *start.resume_file, start.resume_from, run);
    start.resume_file.reset();  // its tensors are in the trainer now
    evaluated_at_start = resumed.evaluated_at_step;
    std::error_code ec;
    std::filesystem::remove(run.file("summary.json"), ec);  // the run is incomplete again until it ends
    for (const auto& line : resumed.records) {
      if (line.contains("eval_step") && line.contains("reward") && line.contains("distance")) {
        curve_step.push_back(line["eval_step"].get<double>());
        curve_reward.push_back(line["reward"].get<double>());
        curve_distance.push_back(line["distance"].get<double>());
      } else if (line.contains("step") && line.contains("reward_mean")) {
        batch_step.push_back(line["step"].get<double>());
        batch_reward.push_back(line["reward_mean"].get<double>());
      }
    }
  } else {
    curve_eval(0, *base);
  }
  io.log << "finetune: method " << trainer.method().name() << ", " << steps << " steps of "
         << cfg.integer("groups") * cfg.integer("group") << " endpoints x " << cfg.raw("draws")
         << " draws\n";
  Progress bar("finetune", steps, io.log, io.tty);
  jobs::DriveHooks hooks;
  hooks.on_step = [&](const StepRecord& rec) {
    run.append_metrics(jobs::step_line(rec));
    batch_step.push_back(static_cast<double>(rec.step));
    batch_reward.push_back(rec.reward_mean);
    bar.update(rec.step, "reward " + jobs::fixed(rec.reward_mean) + "  loss " + jobs::fixed(rec.loss, 4));
  };
  hooks.on_eval = [&](int64_t step) { curve_eval(step, trainer.eval_model()); };
  jobs::DriveOptions drive_options;
  drive_options.steps = steps;
  drive_options.eval_every = cfg.integer("eval_every");
  drive_options.checkpoint_every = cfg.integer("checkpoint_every");
  drive_options.meta = ckpt_meta;
  drive_options.max_bad_steps = cfg.integer("max_bad_steps");
  drive_options.resume_hint = "ramflow finetune --resume " + run.path();
  drive_options.evaluated_at_start = evaluated_at_start;
  hooks.warn = [&](const std::string& text) { bar.note("warning: " + text); };
  const jobs::DriveResult driven = jobs::drive(trainer, series, drive_options, hooks);
  const StepRecord& rec = driven.last;
  if (driven.end == jobs::DriveEnd::kStopped) {
    bar.finish("stopped");
    throw Interrupted(std::string(signal_name(driven.signal)) + ": stopped after step " +
                          std::to_string(trainer.steps_done()) + " of " + std::to_string(steps) + "; checkpoint " +
                          driven.checkpoint + "; continue with: ramflow finetune --resume " + run.path(),
                      driven.signal);
  }
  bar.finish("reward " + jobs::fixed(rec.reward_mean));

  // --- 4. final evaluation, checkpoint, plots, summary ---------------------------------------------
  const EvalResult after = evaluator.evaluate(trainer.eval_model(), 0, /*kl=*/true);
  curve_eval(steps, trainer.eval_model(), /*final=*/true);
  nlohmann::json final_meta = ckpt_meta;
  final_meta["step"] = trainer.steps_done();
  save_checkpoint(run.checkpoint("final"), checkpoint_models(trainer, /*with_old=*/false), final_meta);
  LoraVelocityFieldImpl* lora = as_lora(trainer.policy());
  if (lora) {
    // The evaluated model's adapters in PEFT's layout, and its weights merged into the base architecture.
    LoraVelocityFieldImpl& evaluated = *as_lora(trainer.eval_model());
    save_peft_adapter(evaluated, run.path() + "/lora", cfg.is_set("base") ? cfg.text("base") : "");
    save_checkpoint(run.checkpoint("merged"), {{"policy", evaluated.merged().get()}}, final_meta);
  }

  Rng plot_rng(static_cast<uint64_t>(cfg.integer("eval_seed")) + 7);
  const int64_t n_plot = std::min<int64_t>(2000, cfg.integer("eval_samples"));
  if (task->sample_shape().size() == 3)
    jobs::class_grids(run.plot("samples"), {before.samples, after.samples}, {before.cond}, *task, 8);
  else
    sample_panels(run.plot("samples"),
                {jobs::panel("base model", before.samples.narrow(0, 0, n_plot), reward->spec()),
                 jobs::panel(trainer.method().name() + " after " + std::to_string(steps) + " steps",
                             after.samples.narrow(0, 0, n_plot), reward->spec()),
                 jobs::panel("exact target p_{ref} e^{m r}", evaluator.target_samples(n_plot, plot_rng),
                             reward->spec())});
  line_plot(run.plot("reward"), "mean reward: training batches and evaluations", "training step", "mean reward",
            {{"training batch", batch_step, batch_reward, palette(5) + "1"},
             {"evaluation", curve_step, curve_reward, palette(0) + "2"}},
            {{target.reward_optimal, "exact target (optimal)", kOptimumStyle},
             {target.reward_base, "base model (pool)", kBaseStyle}});
  line_plot(run.plot("distance"), "energy distance to the exact target", "training step", "energy distance to p*",
            {{"evaluation", curve_step, curve_distance, palette(0) + "2"}},
            {{0.0, "exact target", kOptimumStyle}});

  const double seconds = rec.seconds;
  const double gap = target.reward_optimal - before.reward_mean;
  nlohmann::json summary = {
      {"method", trainer.method().name()},
      {"task", task->name()},
      {"reward", reward->spec()},
      {"multiplier", m},
      {"steps", steps},
      {"seconds", seconds},
      {"ms_per_step", 1000.0 * seconds / static_cast<double>(steps)},
      {"eval_seconds", eval_seconds},
      {"total_seconds",
       std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count()},
      {"nfe", rec.nfe},
      {"reward_evals", rec.reward_evals},
      {"reward_before", before.reward_mean},
      {"reward_after", after.reward_mean},
      {"reward_optimal", target.reward_optimal},
      {"reward_optimal_closed_form",
       std::isnan(target.reward_optimal_closed_form) ? nlohmann::json(nullptr)
                                                     : nlohmann::json(target.reward_optimal_closed_form)},
      {"fraction_of_optimal", gap != 0 ? (after.reward_mean - before.reward_mean) / gap : 0.0},
      {"kl_to_base", after.kl_to_base},
      {"kl_optimal", target.kl_optimal},
      {"tilt_distance_before", before.distance},
      {"tilt_distance_after", after.distance},
      {"target_ess", target.ess},
      {"before", eval_json(before)},
      {"after", eval_json(after)},
      {"evaluated_model", trainer.eval_model_name()},
      {"checkpoint", "checkpoints/final.safetensors"}};
  if (lora) {
    summary["lora"] = {{"rank", lora->options().rank()},
                       {"alpha", lora->options().alpha()},
                       {"layers", lora->layers().size()},
                       {"trainable_parameters", parameter_count(*lora)},
                       {"adapter", "lora/adapter_model.safetensors"},
                       {"merged_checkpoint", "checkpoints/merged.safetensors"}};
  }
  if (target.mode_masses.defined()) summary["target_mode_masses"] = jobs::to_vector(target.mode_masses);
  run.write_summary(summary);

  // Where each number comes from: the base and post-trained columns are the final evaluation (the same
  // fixed noise for both); the exact target's column is the importance-weighted pool.
  const std::string name = trainer.method().name() + (trainer.has_eval_ema() ? " (EMA)" : "");
  std::vector<std::vector<std::string>> rows = {
      {"", "base", name, "exact target"},
      {"reward", jobs::fixed(before.reward_mean), jobs::fixed(after.reward_mean),
       jobs::fixed(target.reward_optimal)},
      {"distance to target", jobs::fixed(before.distance, 4), jobs::fixed(after.distance, 4), "0"},
      {"KL to base", "0", kl_text(after.kl_to_base, after.kl_to_base_se), jobs::fixed(target.kl_optimal)}};
  io.log << "\nfinal evaluation: " << cfg.integer("eval_samples") << " samples per model, same fixed noise"
         << " (KL: " << cfg.integer("eval_kl_samples") << "); exact target: pool of " << cfg.integer("eval_pool")
         << "\n"
         << jobs::table(rows);
  if (target.mode_masses.defined()) {
    io.log << "mode masses\n";
    for (const auto& [who, masses] : {std::pair{std::string("base"), before.mode_masses},
                                      std::pair{name, after.mode_masses},
                                      std::pair{std::string("exact target"), target.mode_masses}})
      io.log << "  " << std::left << std::setw(16) << who << masses_text(masses) << "\n";
  }
  io.log << "fraction of the way to reward_optimal: " << jobs::fixed(summary["fraction_of_optimal"], 3) << " = ("
         << jobs::fixed(after.reward_mean) << " - " << jobs::fixed(before.reward_mean) << ") / ("
         << jobs::fixed(target.reward_optimal) << " - " << jobs::fixed(before.reward_mean) << ")   ("
         << jobs::fixed(summary["ms_per_step"], 2) << " ms/step)\n";
  io.log << "run directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
