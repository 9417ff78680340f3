#pragma once
// The one loop that drives a training run for the jobs (finetune, and each run of compare): trainer
// steps, evaluations at fixed steps, training checkpoints, and a graceful stop on SIGINT / SIGTERM.
// The Trainer owns the models, the optimiser, the method's state and the random streams (a function
// of the seed and the step); the driver saves them all (training_checkpoint.h) every
// checkpoint_every steps and at the end, however the run ends. A resumed run restores the trainer
// from its latest checkpoint and calls drive() again: the steps it then takes are the ones the
// uninterrupted run would have taken. Internal to the library (not installed).
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ramflow/run_dir.h"
#include "ramflow/trainer.h"
#include "ramflow/training_checkpoint.h"

namespace ramflow::jobs {

struct DriveOptions {
  int64_t steps = 0;       // the run ends when the trainer has taken this many steps in all
  int64_t eval_every = 0;  // on_eval after every such step except the run's last (0: never)
  double budget_seconds =
      0;  // also end once the trainer's cumulative seconds reach it (0: no budget)
  int64_t checkpoint_every = 0;  // a training checkpoint every N steps (0: only at the end)
  int64_t max_bad_steps = 5;     // this many skipped steps in a row end the run (with a checkpoint)
  std::string resume_hint;       // "ramflow finetune --resume RUN": what the messages tell the user
  /// False for a resumed run whose kept metrics hold no evaluation at its step (resume()): drive()
  /// then makes it first, if that step is an evaluation step. A fresh run's caller evaluates step 0
  /// itself.
  bool evaluated_at_start = true;
  nlohmann::json meta =
      nlohmann::json::object();   // written into every checkpoint (config, method options)
  bool write_checkpoints = true;  // false on the ranks other than 0 of a data-parallel run
};

struct DriveHooks {
  std::function<void(const StepRecord&)> on_step;  // after each step
  std::function<void(int64_t step)> on_eval;  // after the step's on_step, at the evaluation steps
  std::function<void(const std::string&)> warn;  // a skipped step, said once per step
};

enum class DriveEnd { kSteps, kBudget, kStopped };

struct DriveResult {
  DriveEnd end = DriveEnd::kSteps;
  StepRecord last;         // the last step's record (the trainer's totals if no step was taken)
  std::string checkpoint;  // the training checkpoint written at the end
  int signal = 0;          // the signal that stopped the run (kStopped)
};

/// What resume() restored: the records of metrics.jsonl kept, in order, and whether one of them is
/// an evaluation at the checkpoint's step (DriveOptions::evaluated_at_start).
struct Resumed {
  std::vector<nlohmann::json> records;
  bool evaluated_at_step = false;
};

/// Continues a run: restores `trainer` from the training checkpoint `file` (read from `path`) and
/// cuts `run`'s metrics.jsonl back to its step, dropping the evaluation a finished run made of its
/// final model
/// ({"final": true}): it is not one of a longer run's, which evaluates that step only if it is one
/// of its evaluation steps (drive() does, given evaluated_at_start = evaluated_at_step).
Resumed resume(Trainer& trainer, const SafetensorsFile& file, const std::string& path, RunDir& run);

/// Runs `trainer` from its current step to options.steps (or the budget, or a stop signal). A
/// skipped step (StepRecord::skipped) is warned about; max_bad_steps of them in a row write a
/// checkpoint and throw NumericalError. A reward server that stays unreachable (RemoteError) also
/// writes a checkpoint first.
DriveResult drive(Trainer& trainer, CheckpointSeries& series, const DriveOptions& options,
                  const DriveHooks& hooks);

}  // namespace ramflow::jobs
