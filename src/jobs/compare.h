#pragma once
// The parts of `ramflow compare` (compare_job.cpp runs them in order):
//   compare_plan.cpp    the methods and their variants (the sweeps crossed), the target reward's
//   source compare_runs.cpp    the runs, `jobs` at a time, each a TrainingRun evaluated on a shared
//   curve compare_report.cpp  per configuration, the statistics over seeds; report.md, report.json,
//   plots
// Internal to the library.
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/training_run.h"
#include "ramflow/config.h"
#include "ramflow/evaluator.h"
#include "ramflow/jobs.h"
#include "ramflow/reward.h"
#include "ramflow/run_dir.h"
#include "ramflow/task.h"

namespace ramflow::jobs {

/// One configuration of a method: its swept values applied to its config (presets resolved).
struct Variant {
  std::string label, method;                        // "ram multiplier=20"; the registered method
  nlohmann::json sweep = nlohmann::json::object();  // key -> value
  Config cfg;
  nlohmann::json options;  // the method's resolved options under cfg
};

/// What compare runs, resolved before any compute.
struct ComparePlan {
  std::vector<std::string> methods;
  std::vector<Variant> variants;
  bool fixed_target = false;     // --target-reward
  bool fraction_target = false;  // 0.9 of the way from the base to reward_optimal
  std::string target_variant;    // else: the variant whose peak is the target
  const Variant& variant(const std::string& label) const;
};

/// The methods (the default list skips those that need a differentiable reward when it is not),
/// every variant with its presets applied (apply_presets) and validated, and the target's source.
ComparePlan plan_compare(const Config& cfg, const Task& task, const Reward& reward, JobIO io);

/// One run's evaluation curve and its outcome.
struct RunCurve : EvalCurve {
  std::string method, variant;
  int64_t seed = 0;
  double ms_per_step = 0;
  std::string error;  // non-empty if the run failed
};
nlohmann::json curve_json(const RunCurve& c, const nlohmann::json& sweep);
RunCurve curve_from_json(const nlohmann::json& j);

/// Runs every variant x seed in runs/<label>-seed<k>/, `jobs` at a time; a resumed comparison
/// reuses the finished runs and continues the others from their checkpoints. A run that fails
/// records its error.
std::vector<RunCurve> run_all(const ComparePlan& plan, const Config& cfg, const TaskPtr& task,
                              const RewardPtr& reward, const VelocityFieldPtr& base,
                              const CurveEvaluator& curve, RunDir& run, bool resuming,
                              int64_t jobs_n, JobIO io);

/// The comparison's inputs to its report.
struct CompareResults {
  const ComparePlan& plan;
  const Config& cfg;
  const Task& task;
  const Reward& reward;
  const Evaluator& evaluator;
  const EvalResult& before;  // the base model on the curve's samples
  double target_diversity;   // of exact-target samples
  double target_reward;      // known before the runs (fixed or fraction target), else NaN
  const std::vector<RunCurve>& curves;
};
/// Aggregates over seeds, writes report.md, report.json and the plots into `run`, and returns the
/// summary (written last, by the caller). Prints the results table to io.log.
nlohmann::json write_report(const CompareResults& r, RunDir& run, JobIO io);

}  // namespace ramflow::jobs
