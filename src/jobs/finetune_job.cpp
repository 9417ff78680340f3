// `ramflow finetune`: post-train the base model against a reward and measure it against the exact
// target.
//   1. resolve and validate everything (task, reward, method) before any compute
//   2. base model (given, cached or pretrained) -> exact target p* ∝ p_ref exp(m r) from its
//   samples
//   3. the shared Trainer loop, with a progress bar, metrics.jsonl and periodic evaluations
//   4. final evaluation, checkpoint, plots, summary.json (last), and a before/after table
// On several processes (JobIO::comm, docs/distributed.md) every rank runs these steps alike: the
// trainer and the evaluations split their work among the ranks, and rank 0 alone writes.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <utility>

#include <torch/torch.h>

#include "jobs/params.h"
#include "jobs/report.h"
#include "jobs/resolve.h"
#include "jobs/run_start.h"
#include "jobs/training_run.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/html_report.h"
#include "ramflow/lora.h"
#include "ramflow/lora_diffusers.h"
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
  jobs::add_distributed_params(t);
  t.integer("eval_every", 50, "evaluate every N steps for the curves (0 = only before and after)",
            0, 100000000);
  t.integer("eval_curve_samples", 1000, "endpoints per intermediate evaluation", 2, 1 << 22);
  return t;
}

namespace {

// The judge's grades of images (ImageMetrics) under the names results use.
nlohmann::json image_json(const ImageMetrics& m) {
  nlohmann::json j = {{m.rate_name, m.accuracy},
                      {"frechet_distance", m.frechet_distance},
                      {"diversity", m.diversity},
                      {"mean_intensity", m.mean_intensity},
                      {"saturated_fraction", m.saturated_fraction},
                      {"edge_density", m.edge_density}};
  nlohmann::json per_class = nlohmann::json::array();
  for (double f : m.frechet_per_class) per_class.push_back(jobs::json_number(f));
  if (!per_class.empty()) j["frechet_distance_per_class"] = per_class;
  return j;
}

nlohmann::json eval_json(const EvalResult& e) {
  nlohmann::json j = {{"reward", e.reward_mean},
                      {"reward_std", e.reward_std},
                      {"distance", jobs::json_number(e.distance)},
                      {"kl_to_base", jobs::json_number(e.kl_to_base)},
                      {"kl_to_base_se", jobs::json_number(e.kl_to_base_se)}};
  if (e.mode_masses.defined()) j["mode_masses"] = jobs::to_vector(e.mode_masses);
  if (!e.reward_terms.empty()) j["reward_terms"] = e.reward_terms;  // each named part of the reward
  if (e.image)
    j.update(image_json(*e.image));
  else
    j["diversity"] = e.diversity;
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

// The table of the final evaluation: base, post-trained model and (with the exact target) the
// target.
std::string final_table(const Evaluator& evaluator, const EvalResult& before,
                        const EvalResult& after, const std::string& name) {
  std::vector<std::vector<std::string>> rows;
  const std::optional<ImageMetrics> data = evaluator.judge_data();
  if (evaluator.has_target()) {
    const ExactTarget& target = evaluator.target();
    rows = {{"", "base", name, "exact target"},
            {"reward", jobs::fixed(before.reward_mean), jobs::fixed(after.reward_mean),
             jobs::fixed(target.reward_optimal)},
            {"distance to target", jobs::fixed(before.distance, 4), jobs::fixed(after.distance, 4),
             "0"},
            {"KL to base", "0", KLEstimate{after.kl_to_base, after.kl_to_base_se}.text(),
             jobs::fixed(target.kl_optimal)}};
  } else {
    rows = {{"", "base", name},
            {"reward", jobs::fixed(before.reward_mean), jobs::fixed(after.reward_mean)},
            {"KL to base", "0", KLEstimate{after.kl_to_base, after.kl_to_base_se}.text()}};
    // Images: the diversity is the judge's, with its rows below.
    if (!data)
      rows.insert(rows.begin() + 2,
                  {"diversity", jobs::fixed(before.diversity), jobs::fixed(after.diversity)});
    for (const auto& [term, value] : after.reward_terms)
      rows.push_back(
          {"reward: " + term, jobs::fixed(before.reward_terms.at(term)), jobs::fixed(value)});
  }
  if (data && before.image && after.image) {
    // The evaluation's judge (the classifier or the text reader), which the reward never sees, and
    // the same judge on the task's test images: the level a model's rate and diversity are read
    // against.
    const size_t width = rows[0].size();
    for (auto& row : rows) row.push_back("");
    rows[0].back() = "test data";
    std::vector<std::vector<std::string>> judge = {
        {"judge: " + before.image->rate_name, jobs::fixed(before.image->accuracy),
         jobs::fixed(after.image->accuracy)},
        {"judge: Frechet distance", jobs::fixed(before.image->frechet_distance),
         jobs::fixed(after.image->frechet_distance)},
        {"judge: diversity", jobs::fixed(before.image->diversity),
         jobs::fixed(after.image->diversity)}};
    const std::vector<std::string> of_data = {jobs::fixed(data->accuracy),
                                              jobs::fixed(data->frechet_distance),
                                              jobs::fixed(data->diversity)};
    for (size_t i = 0; i < judge.size(); ++i) {
      judge[i].resize(width, "");
      judge[i].push_back(of_data[i]);
      rows.push_back(judge[i]);
    }
  }
  return jobs::table(rows);
}

// The samples of one evaluation, for the report's slider (html_report.h): plots/steps/step-<k>.png,
// class grids of 4 per row for images, a scatter of at most 2000 samples otherwise.
void step_picture(const RunDir& run, const EvalResult& e, const Task& task, const Reward& reward,
                  int64_t step) {
  const std::filesystem::path dir = std::filesystem::path(run.path()) / "plots" / "steps";
  std::filesystem::create_directories(dir);
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld.png", static_cast<long long>(step));
  const std::string path = (dir / name).string(), heading = "step " + std::to_string(step);
  if (e.samples.dim() == 4)
    jobs::class_grids(path, {e.samples}, {heading}, {e.cond}, task, 4);
  else
    sample_panels(path, {jobs::panel(heading, e.samples.narrow(0, 0, std::min<int64_t>(e.n, 2000)),
                                     reward.spec())});
}

// The samples plot: class grids for image tasks, else 2-D panels of base, post-trained and (with
// the exact target) target samples.
void plot_samples(const RunDir& run, const Config& cfg, const Task& task, const Reward& reward,
                  const Evaluator& evaluator, const EvalResult& before, const EvalResult& after,
                  const std::string& method, int64_t steps) {
  if (before.samples.dim() == 4) {  // images (decoded)
    // base | post-trained | the task's test images of the same classes or prompts (the reference).
    std::vector<torch::Tensor> batches = {before.samples, after.samples};
    std::vector<std::string> headings = {"base model",
                                         method + " after " + std::to_string(steps) + " steps"};
    std::vector<Condition> conds = {before.cond, before.cond};
    if (auto test = task.test_split()) {
      batches.push_back(test->x);
      headings.push_back("test images");
      conds.push_back(test->cond);
    }
    jobs::class_grids(run.plot("samples"), batches, headings, conds, task, 8);
    return;
  }
  const int64_t n_plot = std::min<int64_t>(2000, cfg.integer("eval_samples"));
  std::vector<SamplePanel> panels = {
      jobs::panel("base model", before.samples.narrow(0, 0, n_plot), reward.spec()),
      jobs::panel(method + " after " + std::to_string(steps) + " steps",
                  after.samples.narrow(0, 0, n_plot), reward.spec())};
  if (evaluator.has_target()) {
    Rng plot_rng(static_cast<uint64_t>(cfg.integer("eval_seed")) + 7);
    panels.push_back(jobs::panel("exact target p_{ref} e^{m r}",
                                 evaluator.target_samples(n_plot, plot_rng), reward.spec()));
  }
  sample_panels(run.plot("samples"), panels);
}

}  // namespace

nlohmann::json run_finetune(const Config& cfg_in, JobIO io) {
  const auto wall_start = std::chrono::steady_clock::now();
  // --- 1. resolve and validate -------------------------------------------------------------------
  // --resume RUN: RUN's own configuration; only these keys may change.
  const bool resuming = cfg_in.is_set("resume");
  const CommunicatorPtr comm = io.comm ? io.comm : single_process();
  Config cfg = resuming ? jobs::resume_config(
                              cfg_in, {"steps", "checkpoint_every", "keep_checkpoints", "threads"})
                        : cfg_in;
  if (resuming) {
    if (auto summary = jobs::finished_summary(cfg)) {
      io.log << cfg.text("out") << ": finished at step " << cfg.integer("steps")
             << "; nothing to do (a larger --steps trains on)\n";
      return *summary;
    }
  }
  const jobs::RunBasics basics = jobs::resolve_basics(cfg);
  const torch::Device& device = basics.device;
  const TaskPtr& task = basics.task;
  const RewardPtr& reward = basics.reward;
  const double m = basics.multiplier;
  const std::string method = cfg.text("method");
  jobs::apply_presets(cfg, method);
  check_method_keys(cfg, {method});
  Trainer::check(jobs::trainer_options_from(cfg, *task), *methods().get(method).make(cfg),
                 *basics.on_samples, comm->size());
  jobs::check_model(cfg, *task);
  const bool evaluating = cfg.text("eval") != "none";
  const bool diffusers_base = jobs::is_diffusers_base(cfg);

  // --- 2. run directory, base model and evaluation -----------------------------------------------
  jobs::RunStart start = !comm->leader() ? jobs::follow_run(cfg, *task, device, io)
                         : resuming      ? jobs::reopen_run(cfg, device, io)
                                         : jobs::start_run(cfg, *task, device, io);
  jobs::share_base(cfg, start, *comm);
  RunDir& run = start.run;
  const VelocityFieldPtr& base = start.base;
  std::optional<Evaluator> evaluator;
  std::optional<jobs::CurveEvaluator> curve;
  if (evaluating) {
    if (cfg.text("eval") == "exact")
      io.log << "exact target: pool of " << cfg.integer("eval_pool")
             << " base samples, weights exp(" << m << " r)\n";
    evaluator.emplace(task, reward, m, *base, jobs::eval_options_from(cfg), basics.decoder, comm);
    if (evaluator->has_target()) {
      const ExactTarget& target = evaluator->target();
      io.log << "  on the pool: base reward " << jobs::fixed(target.reward_base)
             << ", reward_optimal " << jobs::fixed(target.reward_optimal)
             << ", effective sample size " << jobs::fixed(target.ess, 0);
      if (target.closed_form)
        io.log << ", closed form on the data " << jobs::fixed(target.reward_optimal_closed_form);
      io.log << "\n";
      if (target.ess < 100)
        io.log << "  warning: effective sample size below 100; raise --eval-pool or lower "
                  "--multiplier\n";
    }
    // The curve's evaluations, and the base at the final evaluation's size (the "before" column).
    io.log << "evaluating the base model: " << cfg.integer("eval_samples")
           << " samples of fixed noise, " << cfg.integer("eval_steps") << " steps each\n"
           << std::flush;
    curve.emplace(*evaluator, *base, cfg.integer("eval_curve_samples"),
                  std::vector<int64_t>{evaluator->options().samples()});
  }

  // --- 3. training -------------------------------------------------------------------------------
  const int64_t steps = cfg.integer("steps");
  jobs::TrainingRun training(cfg, method, task, basics.on_samples, base, run,
                             "ramflow finetune --resume " + run.path(), comm);
  Trainer& trainer = training.trainer();
  // The curves of the plots: evaluations, and the training batches' mean reward.
  jobs::EvalCurve evals;
  std::vector<double> batch_step, batch_reward;
  double eval_seconds = 0;
  auto evaluate_line = [&](int64_t step, VelocityFieldImpl& model) {
    if (!curve) return;
    const auto t0 = std::chrono::steady_clock::now();
    const EvalResult e = evaluator->evaluate(model, curve->samples(), /*kl=*/false);
    const auto line = curve->line(step, trainer.totals(), e, /*final=*/false);
    eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    run.append_metrics(line);
    evals.add(line);
    if (!run.writes()) return;
    step_picture(run, e, *task, *reward, step);
    write_run_report(run.path());  // the page follows the run
  };
  if (resuming) {
    // The trainer as the checkpoint left it; metrics.jsonl and the curves up to its step.
    const auto records = training.resume(start.resume_file.get(), start.resume_from);
    start.resume_file.reset();  // its tensors are in the trainer now
    std::error_code ec;
    // The run is incomplete again until it ends.
    if (run.writes()) std::filesystem::remove(run.file("summary.json"), ec);
    for (const auto& line : *records) {
      if (line.contains("eval_step")) {
        evals.add(line);
      } else if (line.contains("step") && line.contains("reward_mean")) {
        batch_step.push_back(line["step"].get<double>());
        batch_reward.push_back(line["reward_mean"].get<double>());
      }
    }
  } else {
    training.start();
    evaluate_line(0, *base);
  }
  io.log << "finetune: method " << trainer.method().name() << ", " << steps << " steps of "
         << cfg.integer("groups") * cfg.integer("group_size") << " endpoints";
  // (t, eps) draws per endpoint, for the methods that read them.
  if (trainer.method().options().contains("draws"))
    io.log << " x " << trainer.method().options()["draws"] << " draws";
  io.log << "\n";
  Progress bar("finetune", steps, io.log, io.tty, trainer.steps_done());
  jobs::TrainingRun::Hooks hooks;
  hooks.on_step = [&](const StepRecord& rec) {
    batch_step.push_back(static_cast<double>(rec.step));
    batch_reward.push_back(rec.reward_mean);
    bar.update(rec.step,
               "reward " + jobs::fixed(rec.reward_mean) + "  loss " + jobs::fixed(rec.loss, 4));
  };
  hooks.on_eval = [&](int64_t step) { evaluate_line(step, trainer.eval_model()); };
  hooks.warn = [&](const std::string& text) { bar.note("warning: " + text); };
  const jobs::DriveResult driven = training.train(hooks);
  const StepRecord& rec = driven.last;
  if (driven.end == jobs::DriveEnd::kStopped) {
    bar.stop(trainer.steps_done());
    throw Interrupted(training.stopped_message(driven), driven.signal);
  }
  bar.finish("reward " + jobs::fixed(rec.reward_mean));

  // --- 4. final evaluation, checkpoint, plots, summary -------------------------------------------
  nlohmann::json final_meta = training.meta();
  final_meta["step"] = trainer.steps_done();
  if (run.writes())
    save_checkpoint(run.checkpoint("final"), checkpoint_models(trainer, /*with_old=*/false),
                    final_meta);
  LoraVelocityFieldImpl* lora = as_lora(trainer.policy());
  if (lora && run.writes()) {
    // The evaluated model's adapters in PEFT's layout, and its weights merged into the base
    // architecture.
    LoraVelocityFieldImpl& evaluated = *as_lora(trainer.eval_model());
    save_peft_adapter(evaluated, run.path() + "/lora", cfg.is_set("base") ? cfg.text("base") : "");
    if (diffusers_base) {
      // diffusers' own format, which StableDiffusion3Pipeline.load_lora_weights reads; a merged
      // copy of a multi-gigabyte base is left to the user (diffusers' fuse_lora).
      save_diffusers_lora(evaluated, run.path() + "/lora/pytorch_lora_weights.safetensors");
    } else {
      save_checkpoint(run.checkpoint("merged"), {{"policy", evaluated.merged().get()}}, final_meta);
    }
  }
  const double seconds = rec.seconds;
  nlohmann::json summary = {{"method", trainer.method().name()},
                            {"task", task->name()},
                            {"reward", reward->spec()},
                            {"multiplier", m},
                            {"steps", steps},
                            {"seconds", seconds},
                            {"ms_per_step", 1000.0 * seconds / static_cast<double>(steps)},
                            {"nfe", rec.nfe},
                            {"nfe_train", rec.nfe_train},
                            {"nfe_total", static_cast<double>(rec.nfe) + rec.nfe_train},
                            {"reward_evals", rec.reward_evals},
                            {"reward_last_batch", rec.reward_mean},
                            {"evaluation", cfg.text("eval")},
                            {"evaluated_model", trainer.eval_model_name()},
                            {"checkpoint", "checkpoints/final.safetensors"}};
  if (lora) {
    summary["lora"] = {{"rank", lora->options().rank()},
                       {"alpha", lora->options().alpha()},
                       {"layers", lora->layers().size()},
                       {"trainable_parameters", parameter_count(*lora)},
                       {"adapter", "lora/adapter_model.safetensors"}};
    if (diffusers_base)
      summary["lora"]["diffusers"] = "lora/pytorch_lora_weights.safetensors";
    else
      summary["lora"]["merged_checkpoint"] = "checkpoints/merged.safetensors";
  }
  // The reward curves, drawn once the curve has its last point (the final evaluation).
  auto plot_reward = [&] {
    std::vector<Series> series;
    series.push_back({"training batch", batch_step, batch_reward, palette(5) + "1"});
    if (curve) series.push_back({"evaluation", evals.step, evals.reward, palette(0) + "2"});
    std::vector<HLine> lines;
    if (evaluator && evaluator->has_target()) {
      lines.push_back(
          {evaluator->target().reward_optimal, "exact target (optimal)", kOptimumStyle});
      lines.push_back({evaluator->target().reward_base, "base model (pool)", kBaseStyle});
    }
    line_plot(run.plot("reward"),
              "mean reward: training batches" + std::string(curve ? " and evaluations" : ""),
              "training step", "mean reward", series, lines);
  };
  const std::string name = trainer.method().name() + (trainer.has_eval_ema() ? " (EMA)" : "");
  if (comm->size() > 1) summary["processes"] = comm->size();
  if (!evaluator) {
    if (!run.writes()) return summary;
    plot_reward();
    summary["total_seconds"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    run.write_summary(summary);
    write_run_report(run.path());
    io.log << "\n"
           << name << " after " << steps << " steps: last batch reward "
           << jobs::fixed(rec.reward_mean) << " (--eval none: no evaluation)   ("
           << jobs::fixed(summary["ms_per_step"], 2) << " ms/step)\n"
           << "run directory: " << run.path() << "\n";
    return summary;
  }
  // The final evaluation: every evaluation sample, with the KL; it is also the curve's last point.
  const EvalResult& before = curve->base_at(evaluator->options().samples());
  const auto t0 = std::chrono::steady_clock::now();
  const EvalResult after = evaluator->evaluate(trainer.eval_model(), 0, /*kl=*/true);
  const auto final_line = curve->line(steps, trainer.totals(), after, /*final=*/true);
  eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  run.append_metrics(final_line);
  evals.add(final_line);
  if (run.writes()) {
    step_picture(run, after, *task, *reward, steps);
    plot_reward();
    plot_samples(run, cfg, *task, *reward, *evaluator, before, after, trainer.method().name(),
                 steps);
  }
  summary["eval_seconds"] = eval_seconds;
  summary["reward_before"] = before.reward_mean;
  summary["reward_after"] = after.reward_mean;
  summary["kl_to_base"] = jobs::json_number(after.kl_to_base);
  summary["before"] = eval_json(before);
  summary["after"] = eval_json(after);
  // The judge on the task's test images: the reference of the rate, diversity and indicators.
  if (const auto data = evaluator->judge_data()) summary["test_data"] = image_json(*data);
  if (evaluator->has_target()) {
    const ExactTarget& target = evaluator->target();
    if (run.writes())
      line_plot(run.plot("distance"), "energy distance to the exact target", "training step",
                "energy distance to p*",
                {{"evaluation", evals.step, evals.distance, palette(0) + "2"}},
                {{0.0, "exact target", kOptimumStyle}});
    const double gap = target.reward_optimal - before.reward_mean;
    summary["reward_optimal"] = target.reward_optimal;
    summary["reward_optimal_closed_form"] = jobs::json_number(target.reward_optimal_closed_form);
    summary["fraction_of_optimal"] =
        gap != 0 ? (after.reward_mean - before.reward_mean) / gap : 0.0;
    summary["kl_optimal"] = target.kl_optimal;
    summary["tilt_distance_before"] = before.distance;
    summary["tilt_distance_after"] = after.distance;
    summary["target_ess"] = target.ess;
    if (target.mode_masses.defined())
      summary["target_mode_masses"] = jobs::to_vector(target.mode_masses);
  }
  summary["total_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  run.write_summary(summary);
  if (run.writes()) write_run_report(run.path());

  // Where each number comes from: the base and post-trained columns are the final evaluation (the
  // same fixed noise for both); the exact target's column is the importance-weighted pool.
  std::ostream& res = io.results_block();
  res << "final evaluation: " << cfg.integer("eval_samples")
      << " samples per model, same fixed noise"
      << " (KL: " << cfg.integer("eval_kl_samples") << ")";
  if (evaluator->has_target()) res << "; exact target: pool of " << cfg.integer("eval_pool");
  res << "\n" << final_table(*evaluator, before, after, name);
  if (evaluator->has_target() && std::min(before.distance, after.distance) < 0)
    res << "(distance to target: the energy distance's unbiased estimate, which a model as close "
           "as these samples can tell comes out slightly below 0)\n";
  if (evaluator->has_target()) {
    const ExactTarget& target = evaluator->target();
    if (target.mode_masses.defined()) {
      res << "mode masses\n";
      for (const auto& [who, masses] :
           {std::pair{std::string("base"), before.mode_masses}, std::pair{name, after.mode_masses},
            std::pair{std::string("exact target"), target.mode_masses}})
        res << "  " << std::left << std::setw(16) << who << masses_text(masses) << "\n";
    }
    res << "fraction of the way to reward_optimal: "
        << jobs::fixed(summary["fraction_of_optimal"], 3) << " = ("
        << jobs::fixed(after.reward_mean) << " - " << jobs::fixed(before.reward_mean) << ") / ("
        << jobs::fixed(target.reward_optimal) << " - " << jobs::fixed(before.reward_mean) << ")";
  } else {
    res << "reward gain: " << jobs::fixed(after.reward_mean - before.reward_mean);
  }
  res << "   (" << jobs::fixed(summary["ms_per_step"], 2) << " ms/step)\n";
  res << "run directory: " << run.path() << " (report.html: the curves and pictures)\n";
  return summary;
}

}  // namespace ramflow
