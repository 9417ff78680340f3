#pragma once
// The jobs behind the `ramflow` subcommands. Each takes a resolved Config (see *_params() for its
// keys), writes progress and notes to `log` and results to `out` (JobIO), and returns its summary.
// The CLI is a thin layer over these.
#include <ostream>

#include <nlohmann/json.hpp>

#include "ramflow/communicator.h"
#include "ramflow/config.h"

namespace ramflow {

/// Where a job reports. `tty` selects the redrawn progress bar over plain lines.
struct JobIO {
  std::ostream& log;            // progress and notes (the command-line tool: stderr)
  bool tty = false;             // `log` is a terminal: progress bars redraw in place
  std::ostream* out = nullptr;  // results: tables, where they were written (the tool: stdout)
  /// Where results go: `out`, or `log` when there is none.
  std::ostream& results() const { return out ? *out : log; }
  /// A blank line between notes and results when both share one stream.
  std::ostream& results_block() const { return out ? *out : log << "\n"; }
  /// The processes of a data-parallel run (docs/distributed.md); null: this one alone. Only
  /// finetune runs on several; rank 0 writes the run directory.
  CommunicatorPtr comm = nullptr;
};

/// pretrain: flow-matching pretraining of a base model on a task; writes a run directory.
ParamTable pretrain_params();
nlohmann::json run_pretrain(const Config& cfg, JobIO io);

/// train-classifier: trains an image classifier (the classifier reward's judge, or the evaluation
/// classifier) on an image task and reports its test accuracy; writes a run directory.
ParamTable train_classifier_params();
nlohmann::json run_train_classifier(const Config& cfg, JobIO io);

/// finetune: post-trains the base model against a reward with a method (RAM by default), evaluates
/// before and after against the exact target, and writes a run directory.
ParamTable finetune_params();
nlohmann::json run_finetune(const Config& cfg, JobIO io);

/// sample: draws endpoints from a checkpoint into CSV or safetensors (and optionally a PNG).
ParamTable sample_params();
nlohmann::json run_sample(const Config& cfg, JobIO io);

/// eval: evaluates a checkpoint against the exact target of its (or another) reward.
ParamTable eval_params();
nlohmann::json run_eval(const Config& cfg, JobIO io);

/// compare: methods x seeds on one task with a shared base model and evaluation; writes report.md,
/// report.json, summary.json and plots into a run directory.
ParamTable compare_params();
nlohmann::json run_compare(const Config& cfg, JobIO io);

/// A job's configuration with the presets its run applies on top of the defaults (the method's,
/// then the task's, then the task's for the method; keys the file or flags gave stay): the values
/// the run will use, which `--help` shows after `--task` or `--method`. A table without a task key
/// (sample, eval) comes back as it is.
Config with_presets(const Config& cfg);

}  // namespace ramflow
