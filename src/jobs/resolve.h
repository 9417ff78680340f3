#pragma once
// Building the pieces of a run from its config, before any compute: the device, the task, the
// reward, the presets, the model spec, the trainer's and the evaluator's options, the policy and
// its reference. Internal to the library.
#include <optional>
#include <string>

#include <torch/types.h>

#include "ramflow/config.h"
#include "ramflow/decoder.h"
#include "ramflow/diffusers_pipeline.h"
#include "ramflow/evaluator.h"
#include "ramflow/lora.h"
#include "ramflow/reward.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"
#include "ramflow/velocity_field.h"

namespace ramflow::jobs {

/// The diffusers pipeline that `base` names, or nullopt when `base` is unset or a ramflow
/// checkpoint (InputError naming what is wrong with a folder that is not an SD3 pipeline).
std::optional<DiffusersPipeline> pipeline_from(const Config& cfg);
/// Whether `base` names a diffusers pipeline folder (its model_index.json exists; nothing read).
bool is_diffusers_base(const Config& cfg);
/// The dtype of `dtype` (float32 where the job has no such key).
torch::Dtype dtype_from(const Config& cfg);

/// Applies `device` and `threads`; returns the device (ConfigError if CUDA is asked for but
/// absent).
torch::Device setup_device(const Config& cfg);
TaskPtr task_from(const Config& cfg);
/// The task a checkpoint's run trained on, rebuilt from the run's config (`run_cfg`, the
/// checkpoint's "config"; `source` names it in errors) by task_from: its mixture, image folder, or
/// diffusers base with its prompt files.
TaskPtr task_of_run(const nlohmann::json& run_cfg, const std::string& source);
/// Task 'prompts' from --prompt-embeds, --prompts and --eval-prompts, for the diffusers base of
/// --base, its samples of `latent_shape` (default: from --height and --width).
TaskPtr prompt_task_from(const Config& cfg,
                         std::optional<std::vector<int64_t>> latent_shape = std::nullopt);
/// The one precedence of a run's configuration, used by every job:
///   table defaults < the method's preset < the task's preset < the task's preset for the method
///   (its "methods": {name: {...}} entry) < a diffusers base's preset < the config file < flags.
/// A diffusers base's preset: task 'prompts', its scheduler's grid and shift, its VAE as the
/// decoder, evaluation 'reward' (no exact target for a text-to-image model).
/// Sets each key of the presets that the file and the flags did not give (keys the job's table
/// lacks are skipped). The task's preset wins over the method's: a method's preset is tuned on the
/// 2-D tasks and does not carry to images. `method` empty: the task's preset only (pretrain, and
/// compare before its methods are known).
void apply_presets(Config& cfg, const std::string& method = "");
/// The reward spec: `reward` (a name or a spec object) overlaid with the reward_* keys that are
/// set.
nlohmann::json reward_spec_from(const Config& cfg);
/// The decoder of `decoder` and `decoder_seed` (frozen), or nullptr for none or the identity;
/// ConfigError when it does not take the task's samples.
DecoderPtr decoder_from(const Config& cfg, const Task& task);
/// The shape of one sample as rewards, judges and pictures see it: the task's, decoded.
std::vector<int64_t> scored_shape(const Task& task, const DecoderPtr& decoder);
/// Builds the reward for the decoded samples and writes its resolved spec back into `cfg` (the
/// reward_* keys then cleared), so that the config a run writes reproduces it.
RewardPtr resolve_reward(Config& cfg, const Task& task, const DecoderPtr& decoder = nullptr);

/// What the training jobs (finetune, compare) resolve first, before any compute: `out` must be set;
/// the device, the task, the decoder, the reward (resolved into cfg as by resolve_reward, and
/// probed: probe_reward) and m.
struct RunBasics {
  torch::Device device;
  TaskPtr task;
  DecoderPtr decoder;    // nullptr: the identity
  RewardPtr reward;      // scores decoded samples (the evaluator's)
  RewardPtr on_samples;  // the same seen from the model's samples: decoded_reward(decoder, reward)
  double multiplier;
};
RunBasics resolve_basics(Config& cfg);
/// One call of `reward` (seen from the model's samples) on two samples of the task's shape (noise:
/// the reward must take them, not like them) with the task's evaluation conditions, before anything
/// is computed or written: a reward that cannot score the task's samples (a classifier of images on
/// the ring), or a reward server that does not answer, is a ConfigError naming the reward and the
/// task, not a failure after the exact target's pool.
void probe_reward(const Reward& reward, const Task& task, torch::Device device);
/// The model spec: a diffusers base's transformer (with grad_checkpoint), else `model` if set, else
/// the task's default.
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
/// The trainer's conditions: the task's training conditions and its null condition (empty if
/// unconditional).
ConditionSource condition_source(TaskPtr task);
/// ConfigError if guidance (cfg, eval_cfg != 1) is asked of an unconditional task.
void check_conditions(const Config& cfg, const Task& task);

/// ConfigError before any compute if the configured architecture (`model`, else the task's) cannot
/// be built or the LoRA targets match none of its layers.
void check_model(const Config& cfg, const Task& task);
}  // namespace ramflow::jobs
