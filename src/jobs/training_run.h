#pragma once
// One training run of a job: `finetune`'s run, and each run of `compare`. It owns what both did on
// their own before: the trainer built from the config and the base model, the run's checkpoint
// series, the restore of a resumed run, the evaluation lines of metrics.jsonl (one layout,
// eval_line in report.h), the loop (run_driver.h) and the message of a run stopped by a signal.
// Internal to the library.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/run_driver.h"
#include "ramflow/config.h"
#include "ramflow/evaluator.h"
#include "ramflow/reward.h"
#include "ramflow/run_dir.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"
#include "ramflow/training_checkpoint.h"

namespace ramflow::jobs {

/// A run's evaluation curve, read from its evaluation lines (eval_line): the same whether the run
/// evaluated them now or a resumed run read them back from metrics.jsonl. Index 0 is the base
/// model.
struct EvalCurve {
  std::vector<double> step, seconds, nfe_total, reward_evals, reward, distance, distance_base,
      diversity;
  // Image tasks: the judge's rate (ImageMetrics: "accuracy" of a classifier, "exact_match" of a
  // reader; named by `rate_name`) and the Fréchet distance at each point (NaN without a judge).
  std::vector<double> judge_rate, frechet;
  std::string rate_name = "accuracy";
  std::map<std::string, std::vector<double>> reward_terms;  // each named part of the reward
  double kl_to_base = std::nan("");                         // at the final evaluation
  double kl_to_base_se = std::nan("");                      // its standard error
  void add(const nlohmann::json& line);
  /// The judge's rate and the Fréchet distance at the last point (NaN without a judge).
  double final_rate() const { return judge_rate.empty() ? std::nan("") : judge_rate.back(); }
  double final_frechet() const { return frechet.empty() ? std::nan("") : frechet.back(); }
};

/// The evaluations of a run's curve: the Evaluator on the first `samples` of its fixed noise, and
/// the energy distance of each evaluated model from the base model's samples on the same noise.
/// Thread-safe once built (compare's runs share one).
class CurveEvaluator {
 public:
  /// Evaluates `base` at `samples` (the curve's size) and at each size of `extra` (another
  /// evaluation's), each capped at the evaluator's set (EvalOptions::samples) as it caps them.
  CurveEvaluator(const Evaluator& evaluator, VelocityFieldImpl& base, int64_t samples,
                 const std::vector<int64_t>& extra = {});
  /// The evaluation line of `model` at `step` (`totals`: the trainer's counters then) on the
  /// curve's samples; `final`: with the KL to the base, flagged {"final": true}.
  nlohmann::json line(int64_t step, const StepRecord& totals, VelocityFieldImpl& model,
                      bool final) const;
  /// The line of an evaluation made elsewhere (its size one of the constructor's).
  nlohmann::json line(int64_t step, const StepRecord& totals, const EvalResult& e,
                      bool final) const;
  /// The base model's evaluation on the curve's samples, or on `n` (one of the constructor's
  /// sizes).
  const EvalResult& base() const { return base_.at(samples_); }
  const EvalResult& base_at(int64_t n) const { return base_.at(n); }
  int64_t samples() const { return samples_; }
  const Evaluator& evaluator() const { return evaluator_; }

 private:
  const Evaluator& evaluator_;
  int64_t samples_;
  std::map<int64_t, EvalResult> base_;   // the base model's evaluation per size
  std::map<int64_t, double> base_self_;  // its samples' mean cross distance to themselves
};

class TrainingRun {
 public:
  /// The trainer of method `method` under `cfg` (its options, the policy and reference from
  /// `base`), writing checkpoints into `run`'s checkpoints/. `reward` scores the model's own
  /// samples (through the decoder: RunBasics::on_samples). `resume_hint`: the command that
  /// continues the run.
  /// `comm`: the processes of a data-parallel run (null: one); rank 0's `run` writes, the
  /// others' is RunDir::follow's.
  TrainingRun(const Config& cfg, const std::string& method, const TaskPtr& task,
              const RewardPtr& reward, const VelocityFieldPtr& base, RunDir& run,
              std::string resume_hint, CommunicatorPtr comm = nullptr);

  /// Continues from a training checkpoint: `file` (read from `path`) if given, else the run's
  /// latest; metrics.jsonl is cut back to its step and its kept records are returned. nullopt when
  /// there is no checkpoint to continue from (nothing changed then).
  std::optional<std::vector<nlohmann::json>> resume(const SafetensorsFile* file = nullptr,
                                                    const std::string& path = "");
  /// A fresh start: metrics.jsonl emptied of an earlier attempt.
  void start();

  struct Hooks {
    std::function<void(int64_t step)> on_eval;  // at the evaluation steps, after the step's line
    std::function<void(const StepRecord&)> on_step;  // after each step's line is written
    std::function<void(const std::string&)> warn;    // a skipped step
  };
  /// Trains to the configured steps (or the budget, or a stop signal), appending each step's line.
  DriveResult train(const Hooks& hooks, double budget_seconds = 0);
  /// The message of a run stopped by a signal: where its checkpoint is, and how to continue.
  std::string stopped_message(const DriveResult& driven) const;

  Trainer& trainer() { return *trainer_; }
  RunDir& run() { return run_; }
  /// The metadata every checkpoint of the run carries: the config, the method and its options.
  const nlohmann::json& meta() const { return meta_; }

 private:
  const Config cfg_;
  RunDir& run_;
  std::unique_ptr<Trainer> trainer_;
  CheckpointSeries series_;
  nlohmann::json meta_;
  std::string resume_hint_;
  bool evaluated_at_start_ = true;
};

}  // namespace ramflow::jobs
