#pragma once
// Report helpers of the jobs: sample panels, class grids, text tables, numbers as text and JSON,
// the lines of metrics.jsonl. Internal to the library.
#include <string>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/condition.h"
#include "ramflow/evaluator.h"
#include "ramflow/plot.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"

namespace ramflow::jobs {

SamplePanel panel(const std::string& title, const torch::Tensor& samples);
/// The same, with the centres of the reward's bumps and bowls (its "center" fields, through the
/// terms of a sum) marked on 2-D panels.
SamplePanel panel(const std::string& title, const torch::Tensor& samples,
                  const nlohmann::json& reward_spec);
std::vector<double> to_vector(const torch::Tensor& t);
/// Image batches x_i [N, C, H, W] side by side in one PNG under their `headings` (one per batch),
/// one row per class of a class-conditional task, else per condition that occurs (a prompt; at most
/// 10, in id order), each row labelled with its class or prompt: the first `per_class` samples of
/// each by the conditions `conds` (one batch of conditions shared by all batches, as for samples
/// from the same noise and conditions, or one per batch); black where a batch has fewer of one. One
/// row for an unconditional task. Tiles enlarged to be legible (save_labelled_grids).
void class_grids(const std::string& path, const std::vector<torch::Tensor>& batches,
                 const std::vector<std::string>& headings, const std::vector<Condition>& conds,
                 const Task& task, int64_t per_class);
/// A left-aligned text table (first row is the header).
std::string table(const std::vector<std::vector<std::string>>& rows);
std::string fixed(double v, int digits = 3);
/// x as JSON, or null when it is not finite (JSON has no NaN or infinity).
nlohmann::json json_number(double x);
/// A training step's line of metrics.jsonl: step, seconds, reward statistics, loss, gradient norm,
/// counters (network evaluations per endpoint so far: nfe by rollouts, nfe_train by losses,
/// nfe_total both), the method's metrics, and "skipped" with its reason for a skipped step.
nlohmann::json step_line(const StepRecord& rec);
/// An evaluation's line of metrics.jsonl, the one layout of finetune and compare: eval_step,
/// samples (the evaluation's size), the trainer's counters then (seconds, nfe, nfe_train,
/// nfe_total, reward_evals), reward, reward_std, distance (to the exact target; null without one),
/// distance_from_base, diversity, reward_terms, the judge's accuracy and frechet_distance (image
/// tasks); the final evaluation adds "final": true and kl_to_base with its standard error
/// kl_to_base_se.
nlohmann::json eval_line(int64_t step, const StepRecord& totals, const EvalResult& e,
                         double distance_from_base, bool final);

}  // namespace ramflow::jobs
