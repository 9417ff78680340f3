// `ramflow compare`: methods x seeds on one task at matched settings, measured against the exact
// target.
//   1. resolve everything (task, reward, every method with its presets) before any compute
//   (compare_plan.cpp)
//   2. one base model and one evaluation (fixed noise, exact target) shared by every run
//   3. the runs, `jobs` at a time (one thread each), each a TrainingRun evaluated every eval_every
//   steps
//      (compare_runs.cpp)
//   4. per configuration, mean and std over seeds: final and peak reward, fraction of the way to
//      reward_optimal, distance to the exact target, diversity, steps and seconds to a target
//      reward, cost per step; report.md, report.json, plots (compare_report.cpp), and summary.json
//      last
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <thread>

#include <torch/torch.h>

#include "jobs/compare.h"
#include "jobs/params.h"
#include "jobs/report.h"
#include "jobs/resolve.h"
#include "jobs/run_start.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/html_report.h"
#include "ramflow/metrics.h"
#include "ramflow/runtime.h"
#include "ramflow/stop.h"

namespace ramflow {

ParamTable compare_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/true);
  jobs::add_task_params(t);
  jobs::add_pretrain_params(t);
  jobs::add_reward_params(t, /*with_defaults=*/true);
  t.group("Comparison");
  t.text("methods", "ram,flow-grpo,adjoint-matching,nft,draft",
         "comma-separated methods (" + methods().joined_names() + ")");
  t.integer("seeds", 3, "seeds per method: seed, seed + 1, ...", 1, 1000);
  t.number("budget_seconds", 0.0,
           "wall-clock training budget per run, on top of --steps (0 = none)", 0, 1e9);
  t.text("target_method", "flow-grpo",
         "the baseline whose peak evaluation reward (mean over seeds) is the target reward");
  t.number("target_reward", nullptr, "the target reward (overrides target_method)", -1e9, 1e9);
  t.integer("jobs", 0, "runs at a time, one thread each (0 = one per core)", 0, 1024);
  t.text("sweep", nullptr,
         "KEY=V1,V2,... crossed with methods and seeds; several separated by ';' (e.g. "
         "'multiplier=5,20,100;grpo_kl=0.01,0.1,1'). A method key applies to the methods that read "
         "it; a "
         "rollout or optimisation key to every method");
  jobs::add_training_params(t, /*with_method=*/false);
  jobs::add_eval_params(t);
  jobs::add_checkpoint_params(t);
  t.integer("eval_every", 50, "evaluate every N steps for the curves", 1, 100000000);
  t.integer("eval_curve_samples", 1000, "endpoints per evaluation", 2, 1 << 22);
  return t;
}

nlohmann::json run_compare(const Config& cfg_in, JobIO io) {
  const auto wall_start = std::chrono::steady_clock::now();
  // --- 1. resolve and validate -------------------------------------------------------------------
  // --resume DIR: DIR's own configuration; only these keys may change.
  const bool resuming = cfg_in.is_set("resume");
  Config cfg = resuming ? jobs::resume_config(cfg_in, {"steps", "checkpoint_every",
                                                       "keep_checkpoints", "threads", "jobs"})
                        : cfg_in;
  const jobs::RunBasics basics = jobs::resolve_basics(cfg);
  const torch::Device& device = basics.device;
  const TaskPtr& task = basics.task;
  const RewardPtr& reward = basics.reward;
  const double m = basics.multiplier;
  if (cfg.text("eval") == "none")
    throw ConfigError("--eval none: compare measures its runs; use exact or reward");
  const bool exact = cfg.text("eval") == "exact";
  const jobs::ComparePlan plan = jobs::plan_compare(cfg, *task, *basics.on_samples, io);
  if (!exact && plan.fraction_target)
    throw ConfigError(
        "--eval reward: without the exact target there is no reward_optimal to aim at; give "
        "--target-reward or put --target-method " +
        cfg.text("target_method") + " among --methods");
  jobs::check_model(cfg, *task);

  // --- 2. run directory, shared base model and evaluation
  // ------------------------------------------- The base model is saved in the directory: a resumed
  // comparison needs neither the cache nor pretraining.
  std::string base_file =
      (std::filesystem::path(cfg.text("out")) / "checkpoints" / "base.safetensors").string();
  jobs::RunStart start = resuming ? jobs::reopen_run(cfg, device, io, base_file)
                                  : jobs::start_run(cfg, *task, device, io);
  RunDir& run = start.run;
  const VelocityFieldPtr& base = start.base;
  if (!resuming) save_checkpoint(base_file, {{"base", base.get()}}, {{"config", cfg.values()}});
  std::error_code fs_error;
  // A resumed comparison is incomplete again until it ends.
  std::filesystem::remove(run.file("summary.json"), fs_error);
  const Evaluator evaluator(task, reward, m, *base, jobs::eval_options_from(cfg), basics.decoder);
  // The runs go in parallel, one CPU thread each; the base row is evaluated under the same thread
  // count, so that its samples are bit for bit those of a run's step 0 (a matrix product's
  // summation order can depend on the threads).
  const int64_t n_runs = static_cast<int64_t>(plan.variants.size()) * cfg.integer("seeds");
  int64_t jobs_n = cfg.integer("jobs");
  if (jobs_n == 0) jobs_n = std::max<int64_t>(1, std::thread::hardware_concurrency());
  jobs_n = std::min<int64_t>(jobs_n, n_runs);
  if (device.is_cpu()) set_threads(1);
  const int64_t n_eval = cfg.integer("eval_curve_samples");
  const jobs::CurveEvaluator curve(evaluator, *base, n_eval);
  const EvalResult& before = curve.base();
  double target_diversity = std::nan("");
  double target_reward =
      std::nan("");  // known before the runs when given, or a fraction of the way
  if (plan.fixed_target) target_reward = cfg.number("target_reward");
  if (exact) {
    const ExactTarget& target = evaluator.target();
    Rng rng(static_cast<uint64_t>(cfg.integer("eval_seed")) + 11);
    target_diversity =
        mean_pair_distance(evaluator.target_samples(n_eval, rng).reshape({n_eval, -1}));
    io.log << "exact target: reward_optimal " << jobs::fixed(target.reward_optimal) << ", base "
           << jobs::fixed(before.reward_mean) << ", effective sample size "
           << jobs::fixed(target.ess, 0) << "\n";
    constexpr double kTargetFraction = 0.9;
    if (plan.fraction_target)
      target_reward =
          before.reward_mean + kTargetFraction * (target.reward_optimal - before.reward_mean);
  } else {
    io.log << "evaluation: base reward " << jobs::fixed(before.reward_mean)
           << " (--eval reward, no exact target)\n";
  }
  if (plan.fixed_target)
    io.log << "target reward " << jobs::fixed(target_reward) << " (--target-reward)\n";
  else if (plan.fraction_target)
    io.log << "target reward " << jobs::fixed(target_reward)
           << ": 0.9 of the way from the base to reward_optimal (" << cfg.text("target_method")
           << ", the default --target-method, is not among --methods)\n";
  else
    io.log << "target reward: the peak of " << plan.target_variant
           << ", mean over seeds (known when its runs end)\n";

  // --- 3. the runs -------------------------------------------------------------------------------
  // Steps per configuration: a task's preset for a method, or a swept steps, may set its own.
  int64_t fewest = INT64_MAX, most = 0;
  for (const auto& v : plan.variants) {
    fewest = std::min(fewest, v.cfg.integer("steps"));
    most = std::max(most, v.cfg.integer("steps"));
  }
  io.log << "compare: " << plan.variants.size() << " configurations of " << plan.methods.size()
         << " methods x " << cfg.integer("seeds") << " seeds, "
         << (fewest == most ? std::to_string(most)
                            : std::to_string(fewest) + "-" + std::to_string(most))
         << " steps each, " << jobs_n << " at a time\n";
  const std::vector<jobs::RunCurve> curves =
      jobs::run_all(plan, cfg, task, basics.on_samples, base, curve, run, resuming, jobs_n, io);
  if (const int signo = stop_signal(); signo != 0) {
    int64_t finished = 0;
    for (const auto& c : curves) finished += c.error.empty() ? 1 : 0;
    throw Interrupted(std::string(signal_name(signo)) + ": stopped with " +
                          std::to_string(finished) + " of " + std::to_string(curves.size()) +
                          " runs finished, the others checkpointed; continue with: "
                          "ramflow compare --resume " +
                          run.path(),
                      signo);
  }

  // --- 4. report and summary ---------------------------------------------------------------------
  nlohmann::json summary = jobs::write_report(
      {plan, cfg, *task, *reward, evaluator, before, target_diversity, target_reward, curves}, run,
      io);
  summary["total_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  run.write_summary(summary);
  write_compare_report(run.path());
  io.log << "report: " << run.path() << "/report.html\n";
  io.results() << "run directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
