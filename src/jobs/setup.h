#pragma once
// Pieces shared by the jobs: parameter groups, building task / reward / base model from a config, and
// the report helpers. Internal to the library (not installed).
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ramflow/checkpoint.h"
#include "ramflow/config.h"
#include "ramflow/evaluator.h"
#include "ramflow/jobs.h"
#include "ramflow/lora.h"
#include "ramflow/run_dir.h"
#include "ramflow/runtime.h"
#include "ramflow/plot.h"
#include "ramflow/pretrain.h"
#include "ramflow/reward.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"
#include "ramflow/velocity_field.h"

namespace ramflow::jobs {

// --- parameter groups (each job's table is a selection of these) ----------------------------------
void add_run_params(ParamTable& t, bool out_is_dir);
void add_task_params(ParamTable& t);
void add_pretrain_params(ParamTable& t);
void add_reward_params(ParamTable& t, bool with_defaults);
void add_eval_params(ParamTable& t);
/// resume, checkpoint_every, keep_checkpoints (the training jobs).
void add_checkpoint_params(ParamTable& t);
/// method (when `with_method`), every method's keys, rollouts and optimisation.
void add_training_params(ParamTable& t, bool with_method = true);

// --- building from a config ------------------------------------------------------------------------
/// Applies `device` and `threads`; returns the device (ConfigError if CUDA is asked for but absent).
torch::Device setup_device(const Config& cfg);
TaskPtr task_from(const Config& cfg);
/// Applies the task's preset (TaskInfo::preset) to the keys of cfg's table that were not given.
void apply_task_preset(Config& cfg);
/// The reward spec: `reward` (a name or a spec object) overlaid with the reward_* keys that are set.
nlohmann::json reward_spec_from(const Config& cfg);
/// Builds the reward and writes its resolved spec back into `cfg` (the reward_* keys then cleared), so
/// that the config a run writes reproduces it.
RewardPtr resolve_reward(Config& cfg, const Task& task);

/// What the training jobs (finetune, compare) resolve first, before any compute: `out` must be set;
/// the device, the task, the reward (resolved into cfg as by resolve_reward) and the multiplier m.
struct RunBasics {
  torch::Device device;
  TaskPtr task;
  RewardPtr reward;
  double multiplier;
};
RunBasics resolve_basics(Config& cfg);
/// The model spec: `model` if set, else the task's default.
nlohmann::json model_spec_from(const Config& cfg, const Task& task);
EvalOptions eval_options_from(const Config& cfg);
/// The LoRA options of the lora_* keys, or nullopt when --lora-rank is 0 (ConfigError if invalid).
std::optional<LoraOptions> lora_options_from(const Config& cfg);
/// The policy to train and its reference v_ref, from the base: without LoRA a trainable copy of the
/// base and a frozen copy; with LoRA adapters around `base` itself (frozen; adapters drawn from the
/// seed) and `base` as the reference, the same network with adapters off.
struct PolicyAndRef {
  VelocityFieldPtr policy, ref;
};
PolicyAndRef policy_from(const Config& cfg, const VelocityFieldPtr& base);
/// The Trainer's options from the rollout and optimisation keys (seed: `seed`).
TrainerOptions trainer_options_from(const Config& cfg, const Task& task);
/// The trainer's conditions: the task's training conditions and its null condition (empty if unconditional).
ConditionSource condition_source(TaskPtr task);
/// ConfigError if guidance (cfg, eval_cfg != 1) is asked of an unconditional task.
void check_conditions(const Config& cfg, const Task& task);

/// Pretrains a fresh model of the configured architecture on the task, with a progress bar.
VelocityFieldPtr pretrain_base(const Config& cfg, const Task& task, torch::Device device, JobIO io,
                               const std::function<void(const PretrainRecord&)>& on_step = {});

/// The base model: loaded from `base` if set, else from the pretraining cache, else pretrained now and
/// cached. The returned model is on `device` in eval mode.
VelocityFieldPtr base_model(const Config& cfg, const Task& task, torch::Device device, JobIO io);

/// The start of a training job's run: the run directory (created, config.json written) and the base
/// model. Every input is opened and checked before the directory is created (an existing --out, a
/// missing or malformed --base leave nothing behind); pretraining, which is compute, not input, runs after.
struct RunStart {
  RunDir run;
  VelocityFieldPtr base;
  std::string resume_from;  // the training checkpoint to restore (resumed runs), else empty
  std::shared_ptr<const SafetensorsFile> resume_file;  // its contents, read once
};
RunStart start_run(const Config& cfg, const Task& task, torch::Device device, JobIO io);

/// The configuration of `--resume RUN`: RUN/config.json, with the keys of `given` that were set
/// explicitly and may change (`may_change`, e.g. steps) applied; any other key set to a different value
/// is a ConfigError naming it, its value and the run's. `out` becomes RUN.
Config resume_config(const Config& given, const std::set<std::string>& may_change);
/// The start of a resumed run: RUN opened as it is, config.json rewritten (the changed keys), and the base
/// model taken from `base_checkpoint` (model "base") if given, else from RUN's latest training checkpoint
/// (its reference): no cache or pretraining involved. InputError if there is no such checkpoint.
RunStart reopen_run(const Config& cfg, torch::Device device, JobIO io, const std::string& base_checkpoint = "");


/// ConfigError before any compute if the configured architecture (`model`, else the task's) cannot be
/// built or the LoRA targets match none of its layers.
void check_model(const Config& cfg, const Task& task);
/// The model to use from a checkpoint: `requested` if it is a string, else "policy", else "base"; "ref"
/// also names the base of a LoRA policy (adapters off) when the checkpoint stores no "ref".
std::string pick_model(const nlohmann::json& meta, const nlohmann::json& requested,
                       const std::string& path);
/// The reference model of a checkpoint: "ref" when it stores one or holds a LoRA policy, else "base".
std::string reference_name(const nlohmann::json& meta);
/// Loads the model `name` chosen by pick_model (`meta`: the checkpoint's metadata); from `file` if given
/// (the checkpoint already read), else from `path`.
VelocityFieldPtr load_model(const std::string& path, const nlohmann::json& meta, const std::string& name,
                            const SafetensorsFile* file = nullptr);

// --- reporting -------------------------------------------------------------------------------------
SamplePanel panel(const std::string& title, const torch::Tensor& samples);
/// The same, with the centres of the reward's bumps and bowls (its "center" fields, through the terms of
/// a sum) marked on 2-D panels.
SamplePanel panel(const std::string& title, const torch::Tensor& samples, const nlohmann::json& reward_spec);
std::vector<double> to_vector(const torch::Tensor& t);
/// Image batches x_i [N, C, H, W] side by side in one PNG, one row per class: the first `per_class`
/// samples of each class by the conditions `conds` (one batch of conditions shared by all batches, as for samples from
/// the same noise and classes, or one per batch); black where a batch has fewer of a class.
void class_grids(const std::string& path, const std::vector<torch::Tensor>& batches,
                 const std::vector<Condition>& conds, const Task& task, int64_t per_class);
/// A left-aligned text table (first row is the header).
std::string table(const std::vector<std::vector<std::string>>& rows);
std::string fixed(double v, int digits = 3);
/// x as JSON, or null when it is not finite (JSON has no NaN or infinity).
nlohmann::json json_number(double x);
/// A training step's line of metrics.jsonl: step, seconds, reward statistics, loss, gradient norm,
/// counters, the method's metrics, and "skipped" with its reason for a skipped step.
nlohmann::json step_line(const StepRecord& rec);

}  // namespace ramflow::jobs
