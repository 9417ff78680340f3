// The parameter groups of the jobs (see src/jobs/params.h).
#include "jobs/params.h"

#include "ramflow/lora.h"
#include "ramflow/method.h"
#include "ramflow/reward.h"
#include "ramflow/sampler.h"
#include "ramflow/strings.h"
#include "ramflow/task.h"

namespace ramflow::jobs {

void add_run_params(ParamTable& t, bool out_is_dir) {
  t.group("Run");
  t.text("out", nullptr,
         out_is_dir ? "run directory to write (required)" : "output file (required)");
  if (out_is_dir) t.boolean("overwrite", false, "replace an existing run directory");
  // Where a job writes is given per invocation: a run's config.json, used as --config, never points
  // a new run at the old one's directory.
  t.flag_only("out");
  if (out_is_dir) t.flag_only("overwrite");
  t.integer("seed", 0, "random seed of the job", 0, std::numeric_limits<int32_t>::max());
  t.text("device", "cpu", "torch device: cpu, cuda or cuda:N");
  t.integer("threads", 0, "CPU threads for torch (0 = all cores)", 0, 1024);
}

void add_words_param(ParamTable& t) {
  t.object("words", nullptr,
           "task 'words': its settings, e.g. {\"height\": 16, \"width\": 64, \"max_letters\": 5} "
           "(docs/words.md)");
}

void add_task_params(ParamTable& t) {
  t.group("Task and base model");
  t.text("task", "ring", "data the base model is pretrained on", tasks().names());
  t.object("mixture", nullptr,
           "task 'mixture': {\"weights\": [...], \"means\": [[...]], \"stds\": [...] or \"covs\"}");
  add_words_param(t);
  t.text("data_dir", nullptr,
         "image tasks: the directory of the dataset's IDX files (default: the task's)");
  t.text("base", nullptr,
         "base model: a ramflow checkpoint, or a diffusers SD3 / SD3.5 pipeline folder "
         "(model_index.json, transformer/, vae/, scheduler/) (default: pretrain one, or reuse the "
         "cached one)");
  t.text("dtype", "float32",
         "a diffusers base: the dtype its weights are held and computed in (LoRA adapters stay "
         "float32)",
         {"float32", "bfloat16", "float16"});
  t.boolean("grad_checkpoint", false,
            "a diffusers base: recompute each transformer block in the backward pass (less memory, "
            "one more forward)");
  t.text("prompts", nullptr,
         "task 'prompts': the training prompts, one per line or JSON lines {\"prompt\": ..., "
         "<metadata>}");
  t.text("eval_prompts", nullptr,
         "task 'prompts': held-out evaluation prompts (default: the training prompts)");
  t.text("prompt_embeds", nullptr,
         "task 'prompts': the prompts' embeddings (safetensors: prompt_embeds, "
         "pooled_prompt_embeds, negative_prompt_embeds, negative_pooled_prompt_embeds; "
         "python/encode_prompts.py writes it)");
  t.integer("height", 0, "task 'prompts': image height in pixels (0 = the model's default)", 0,
            1 << 16);
  t.integer("width", 0, "task 'prompts': image width in pixels (0 = the model's default)", 0,
            1 << 16);
  t.text("cache_dir", nullptr,
         "where pretrained base models are cached (default: $RAMFLOW_CACHE_DIR, "
         "$XDG_CACHE_HOME/ramflow or ~/.cache/ramflow)");
  t.object("model", nullptr,
           "velocity-field spec, e.g. {\"type\": \"mlp\", \"hidden\": 128} "
           "(default: the task's)");
  t.object("decoder", nullptr,
           "decoder spec between the model's samples (latents) and everything that scores or shows "
           "them, e.g. "
           "{\"type\": \"mlp\", \"latent_dim\": 2, \"dim\": 2} (default: none, the identity)");
  t.integer("decoder_seed", 0,
            "seed of a learned decoder's weights (checkpoints record spec and seed)", 0,
            std::numeric_limits<int32_t>::max());
}

void add_pretrain_params(ParamTable& t) {
  t.group("Pretraining (flow matching)");
  t.integer("pretrain_steps", 5000, "Adam steps", 1, 10000000);
  t.integer("pretrain_batch", 256, "batch size", 1, 1 << 20);
  t.number("pretrain_lr", 1e-3, "learning rate", 0, 10, true);
  t.number("pretrain_ema", 0.0, "EMA decay of the weights; the base model is the EMA (0 = none)", 0,
           0.999999);
  t.number("pretrain_label_dropout", 0.1,
           "conditional tasks: probability of the null label, which classifier-free guidance needs",
           0, 1);
  t.number("pretrain_grad_clip", 0.0, "max global gradient norm (0 = off)", 0, 1e9);
  t.text("pretrain_time_dist", "uniform",
         "p(t) of the flow-matching loss: uniform, or logit_normal (sigmoid of N(0, 1), SD3's)",
         {"uniform", "logit_normal"});
  t.integer("pretrain_seed", 0,
            "seed of pretraining (separate from --seed, so the cache is reused)", 0,
            std::numeric_limits<int32_t>::max());
}

void add_reward_params(ParamTable& t, bool with_defaults) {
  t.group("Reward");
  t.object("reward",
           with_defaults ? nlohmann::json{{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}}
                         : nlohmann::json(nullptr),
           "reward name (" + rewards().joined_names() +
               ") or a full spec object; the reward_* keys below override its fields");
  t.list("reward_center", nullptr, "bump / quadratic centre c, e.g. 4,0");
  t.number("reward_scale", nullptr, "bump width s", 0, 1e9, true);
  t.number("reward_height", nullptr, "bump height h", -1e9, 1e9);
  t.list("reward_coef", nullptr, "linear coefficients a, e.g. 1,0");
  t.object("reward_q", nullptr, "quadratic curvature Q: a number, a diagonal list or a matrix");
  t.text("reward_url", nullptr, "reward 'remote': the reward server's URL, http://host:port/path");
  t.number("reward_timeout", nullptr, "reward 'remote': seconds a response may take (default 60)",
           0, 1e6, true);
  t.integer("reward_retries", nullptr, "reward 'remote': retries on transient faults (default 3)",
            0, 100);
  t.number("multiplier", with_defaults ? json(5.0) : json(nullptr),
           "m = 1/lambda, the KL temperature: target p* ∝ p_ref exp(m r)", 0, 1e9);
}

void add_eval_params(ParamTable& t) {
  t.group("Evaluation");
  t.text("eval", "exact",
         "exact: against the exact target p* from a pool of base samples (distances, "
         "reward_optimal); reward: "
         "mean and per-term reward, diversity and the judge on held-out conditions, no pool; none: "
         "train only",
         {"exact", "reward", "none"});
  t.integer("eval_samples", 2000, "endpoints per evaluated model", 2, 1 << 22);
  t.integer("eval_pool", 20000,
            "base-model endpoints behind the importance-weighted exact target (--eval exact)", 2,
            1 << 24);
  t.integer("eval_steps", 50, "sampler steps for evaluation", 1, 100000);
  t.text("eval_sampler", "euler", "sampler for evaluation", samplers().names());
  t.integer("eval_seed", 1234, "seed of the fixed evaluation noise", 0,
            std::numeric_limits<int32_t>::max());
  t.integer("eval_kl_samples", 500,
            "samples behind the final KL(p_theta || p_ref) (ODE likelihoods)", 2, 1 << 22);
  t.integer("eval_kl_steps", 50, "Heun steps of the likelihood ODE", 1, 100000);
  t.number("eval_cfg", 1.0,
           "classifier-free guidance scale of the evaluation sampler (conditional tasks)", 0, 100);
  t.text("eval_classifier", nullptr,
         "image tasks: the evaluation classifier (a path or a shipped file's name; default: the "
         "task's)");
}

void add_training_params(ParamTable& t, bool with_method) {
  t.group("Method");
  if (with_method) t.text("method", "ram", "post-training method", methods().names());
  add_method_params(t);
  t.group("Rollouts");
  t.integer("group_size", 32, "G: endpoints per condition group per step", 1, 1 << 20);
  t.renamed("group", "group_size");  // its earlier name, one letter from --groups
  t.integer("groups", 1, "P: condition groups per step (B = P G endpoints)", 1, 1 << 16);
  t.integer("rollout_steps", 25, "sampler steps per rollout", 1, 100000);
  t.number("cfg", 1.0,
           "classifier-free guidance scale of ODE rollouts (conditional tasks; 1 = none)", 0, 100);
  // The methods whose rollouts keep only endpoints (no SDE, no trajectory) take any ODE sampler.
  static const std::string endpoint_only = join(methods_where([](const Method& m) {
    const RolloutSpec spec = m.rollout_spec();
    return spec.noise_level == 0 && !spec.trajectory;
  }));
  t.text("rollout_sampler", "euler",
         "rollout sampler of the endpoint-only methods (" + endpoint_only +
             "); the others use Euler or their SDE",
         samplers().names());
  t.number("rollout_shift", 1.0,
           "grid shift s of rollouts and evaluation: t' = s t / (1 + (s-1) t) (a diffusers base: "
           "its scheduler's)",
           0, 1000, true);
  t.text("rollout_grid", "uniform",
         "the grid of rollouts and evaluation: uniform in t then shifted, or diffusers' "
         "FlowMatchEulerDiscreteScheduler timesteps (a diffusers base's default)",
         {"uniform", "diffusers"});
  t.group("Optimisation");
  t.integer("steps", 600, "training steps (one rollout each)", 1, 100000000);
  t.integer("minibatches", 1,
            "optimiser updates per rollout, each on 1/M of the endpoints (the first is on-policy)",
            1, 1 << 20);
  t.integer("grad_accum", 1,
            "backward passes per optimiser update, each on 1/A of a minibatch's endpoints: the "
            "same update in less memory",
            1, 1 << 20);
  t.number("lr", 1e-4,
           "AdamW learning rate (each method's tuned preset replaces this default: docs/tuning.md)",
           0, 10, true);
  t.number("weight_decay", 0.0, "AdamW weight decay", 0, 10);
  t.number("beta1", 0.9, "AdamW beta1", 0, 1);
  t.number("beta2", 0.999, "AdamW beta2", 0, 1);
  t.number("grad_clip", 0.0, "max global gradient norm (0 = off)", 0, 1e9);
  t.number("old_decay", 0.9,
           "EMA decay of the old policy, for the methods that keep one (docs/methods.md)", 0, 1);
  t.number("old_ramp", 0.01, "old-policy warm-up: decay = min(old_decay, old_ramp * step)", 0, 1);
  t.number("eval_ema", 0.0,
           "evaluate (and save as \"ema\") an EMA of the policy with this decay, warm-up "
           "min(decay, 0.1 step); "
           "0 = the policy itself (Flow-GRPO's and DiffusionNFT's released code: 0.9)",
           0, 1);
  t.group("LoRA (train low-rank adapters only; the reference is the base with adapters off)");
  t.integer("lora_rank", 0, "adapter rank r (0 = train every weight of the model)", 0, 1 << 16);
  t.number("lora_alpha", nullptr, "adapter scale alpha: W = W0 + (alpha / r) B A (default: r)", 0,
           1e9, true);
  t.text("lora_targets", nullptr,
         "comma-separated layer patterns ('*' any run; a pattern also matches a name's end after a "
         "dot; "
         "default: " +
             join(LoraOptions().targets(), ",") + ")");
}

void add_distributed_params(ParamTable& t) {
  t.group("Several processes (ramflow launch, torchrun: docs/distributed.md)");
  t.number("dist_timeout", 300,
           "seconds a collective waits for the other processes before the run fails naming the "
           "lost one",
           1, 1e6, true);
  t.text("dist_backend", "auto", "c10d backend: gloo (CPU tensors), nccl (CUDA) or auto",
         {"auto", "gloo", "nccl"});
}

void add_checkpoint_params(ParamTable& t) {
  t.group("Checkpoints and resume");
  t.text("resume", nullptr,
         "continue the run in this directory from its latest checkpoint, with its own "
         "configuration (flags "
         "may change only --steps, --checkpoint-every, --keep-checkpoints, --threads and --jobs)");
  t.flag_only("resume");
  t.integer(
      "checkpoint_every", 0,
      "write a training checkpoint every N steps (0 = only at the end); each holds the whole state",
      0, 100000000);
  t.integer("keep_checkpoints", 3, "training checkpoints to keep, the newest (0 = all)", 0,
            1000000);
  t.integer("max_bad_steps", 5,
            "a non-finite sample, reward, loss or gradient skips the step; this many in a row stop "
            "the run with "
            "a checkpoint",
            1, 1000000);
}

}  // namespace ramflow::jobs
