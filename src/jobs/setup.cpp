// Pieces shared by the jobs (see src/jobs/setup.h).
#include "jobs/setup.h"

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <sstream>

#include <torch/torch.h>

#include "ramflow/assets.h"
#include "ramflow/checkpoint.h"
#include "ramflow/image.h"
#include "ramflow/lora.h"
#include "ramflow/errors.h"
#include "ramflow/strings.h"
#include "ramflow/method.h"
#include "ramflow/pretrain.h"
#include "ramflow/progress.h"
#include "ramflow/training_checkpoint.h"

namespace fs = std::filesystem;

namespace ramflow::jobs {
namespace {

// FNV-1a, 64 bit: a stable hash for cache keys (std::hash is not stable across builds).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string cache_dir(const Config& cfg) {
  if (cfg.is_set("cache_dir")) return cfg.text("cache_dir");
  if (const char* d = std::getenv("RAMFLOW_CACHE_DIR"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/ramflow";
  if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/ramflow";
  return ".ramflow-cache";
}

}  // namespace

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

void add_task_params(ParamTable& t) {
  t.group("Task and base model");
  t.text("task", "ring", "data the base model is pretrained on", tasks().names());
  t.object("mixture", nullptr,
           "task 'mixture': {\"weights\": [...], \"means\": [[...]], \"stds\": [...] or \"covs\"}");
  t.text("data_dir", nullptr, "image tasks: the directory of the dataset's IDX files (default: the task's)");
  t.text("base", nullptr, "base-model checkpoint (default: pretrain one, or reuse the cached one)");
  t.text("cache_dir", nullptr,
         "where pretrained base models are cached (default: $RAMFLOW_CACHE_DIR, "
         "$XDG_CACHE_HOME/ramflow or ~/.cache/ramflow)");
  t.object("model", nullptr, "velocity-field spec, e.g. {\"type\": \"mlp\", \"hidden\": 128} "
                             "(default: the task's)");
}

void add_pretrain_params(ParamTable& t) {
  t.group("Pretraining (flow matching)");
  t.integer("pretrain_steps", 5000, "Adam steps", 1, 10000000);
  t.integer("pretrain_batch", 256, "batch size", 1, 1 << 20);
  t.number("pretrain_lr", 1e-3, "learning rate", 0, 10, true);
  t.number("pretrain_ema", 0.0, "EMA decay of the weights; the base model is the EMA (0 = none)", 0, 0.999999);
  t.number("pretrain_label_dropout", 0.1,
           "conditional tasks: probability of the null label, which classifier-free guidance needs", 0, 1);
  t.number("pretrain_grad_clip", 0.0, "max global gradient norm (0 = off)", 0, 1e9);
  t.integer("pretrain_seed", 0, "seed of pretraining (separate from --seed, so the cache is reused)",
            0, std::numeric_limits<int32_t>::max());
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
  t.number("reward_timeout", nullptr, "reward 'remote': seconds a response may take (default 60)", 0, 1e6, true);
  t.integer("reward_retries", nullptr, "reward 'remote': retries on transient faults (default 3)", 0, 100);
  t.number("multiplier", with_defaults ? json(5.0) : json(nullptr),
           "m = 1/lambda, the KL temperature: target p* ∝ p_ref exp(m r)", 0, 1e9);
}

void add_eval_params(ParamTable& t) {
  t.group("Evaluation (against the exact target)");
  t.integer("eval_samples", 2000, "endpoints per evaluated model", 2, 1 << 22);
  t.integer("eval_pool", 20000, "base-model endpoints behind the importance-weighted exact target", 2,
            1 << 24);
  t.integer("eval_steps", 50, "sampler steps for evaluation", 1, 100000);
  t.text("eval_sampler", "euler", "sampler for evaluation", samplers().names());
  t.integer("eval_seed", 1234, "seed of the fixed evaluation noise", 0,
            std::numeric_limits<int32_t>::max());
  t.integer("eval_kl_samples", 500, "samples behind the final KL(p_theta || p_ref) (ODE likelihoods)", 2, 1 << 22);
  t.integer("eval_kl_steps", 50, "Heun steps of the likelihood ODE", 1, 100000);
  t.number("eval_cfg", 1.0, "classifier-free guidance scale of the evaluation sampler (conditional tasks)", 0, 100);
  t.text("eval_classifier", nullptr,
         "image tasks: the evaluation classifier (a path or a shipped file's name; default: the task's)");
}

void add_training_params(ParamTable& t, bool with_method) {
  t.group("Method");
  if (with_method) t.text("method", "ram", "post-training method", methods().names());
  add_method_params(t);
  t.group("Rollouts");
  t.integer("group", 32, "G: endpoints per condition group per step", 1, 1 << 20);
  t.integer("groups", 1, "P: condition groups per step (B = P G endpoints)", 1, 1 << 16);
  t.integer("rollout_steps", 25, "sampler steps per rollout", 1, 100000);
  t.number("cfg", 1.0, "classifier-free guidance scale of ODE rollouts (conditional tasks; 1 = none)", 0, 100);
  t.text("rollout_sampler", "euler",
         "rollout sampler of endpoint-only methods (ram, nft); the others use Euler or their SDE",
         samplers().names());
  t.number("rollout_shift", 1.0, "grid shift s: t' = s t / (1 + (s-1) t)", 0, 1000, true);
  t.group("Optimisation");
  t.integer("steps", 600, "training steps (one rollout each)", 1, 100000000);
  t.integer("minibatches", 1,
            "optimiser updates per rollout, each on 1/M of the endpoints (the first is on-policy)", 1,
            1 << 20);
  t.number("lr", 1e-4, "AdamW learning rate (each method's tuned preset replaces this default: docs/tuning.md)", 0, 10, true);
  t.number("weight_decay", 0.0, "AdamW weight decay", 0, 10);
  t.number("beta1", 0.9, "AdamW beta1", 0, 1);
  t.number("beta2", 0.999, "AdamW beta2", 0, 1);
  t.number("grad_clip", 0.0, "max global gradient norm (0 = off)", 0, 1e9);
  t.number("old_decay", 0.9, "EMA decay of the old policy (target_copy ema, nft)", 0, 1);
  t.number("old_ramp", 0.01, "old-policy warm-up: decay = min(old_decay, old_ramp * step)", 0, 1);
  t.number("eval_ema", 0.0,
           "evaluate (and save as \"ema\") an EMA of the policy with this decay, warm-up min(decay, 0.1 step); "
           "0 = the policy itself (Flow-GRPO's and DiffusionNFT's released code: 0.9)",
           0, 1);
  t.group("LoRA (train low-rank adapters only; the reference is the base with adapters off)");
  t.integer("lora_rank", 0, "adapter rank r (0 = train every weight of the model)", 0, 1 << 16);
  t.number("lora_alpha", nullptr, "adapter scale alpha: W = W0 + (alpha / r) B A (default: r)", 0, 1e9, true);
  t.text("lora_targets", nullptr,
         "comma-separated layer patterns ('*' any run; a pattern also matches a name's end after a dot; "
         "default: " + join(LoraOptions().targets(), ",") + ")");
}

std::optional<LoraOptions> lora_options_from(const Config& cfg) {
  const int64_t rank = cfg.integer("lora_rank");
  if (rank == 0) {
    for (const char* key : {"lora_alpha", "lora_targets"})
      if (cfg.is_set(key))
        throw ConfigError(cfg.table().find(key)->flag() + " needs --lora-rank >= 1");
    return std::nullopt;
  }
  LoraOptions o;
  o.rank(rank).alpha(cfg.is_set("lora_alpha") ? cfg.number("lora_alpha") : static_cast<double>(rank));
  if (cfg.is_set("lora_targets")) {
    std::vector<std::string> targets;
    std::stringstream in(cfg.text("lora_targets"));
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) targets.push_back(item);
    o.targets(targets);
  }
  o.check();
  return o;
}

PolicyAndRef policy_from(const Config& cfg, const VelocityFieldPtr& base) {
  if (auto lora = lora_options_from(cfg)) {
    // The base is frozen and shared: it is the reference (adapters off) and the policy's W0.
    auto policy = LoraVelocityField(base, *lora);
    Rng rng(static_cast<uint64_t>(cfg.integer("seed")) * 2 + 1);
    policy->reset_adapters(rng);
    policy->train();
    return {policy.ptr(), base};
  }
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  return {policy, frozen_copy(*base)};
}

TrainerOptions trainer_options_from(const Config& cfg, const Task& task) {
  return TrainerOptions()
      .sample_shape(task.sample_shape())
      .groups(cfg.integer("groups"))
      .group_size(cfg.integer("group"))
      .rollout(SampleOptions()
                   .sampler(cfg.text("rollout_sampler"))
                   .steps(cfg.integer("rollout_steps"))
                   .shift(cfg.number("rollout_shift")))
      .lr(cfg.number("lr"))
      .weight_decay(cfg.number("weight_decay"))
      .beta1(cfg.number("beta1"))
      .beta2(cfg.number("beta2"))
      .grad_clip(cfg.number("grad_clip"))
      .minibatches(cfg.integer("minibatches"))
      .old_decay(cfg.number("old_decay"))
      .old_ramp(cfg.number("old_ramp"))
      .eval_ema(cfg.number("eval_ema"))
      .cfg(cfg.number("cfg"))
      .seed(static_cast<uint64_t>(cfg.integer("seed")));
}

ConditionSource condition_source(TaskPtr task) {
  if (task->condition_count() == 0) return {};
  return {[task](int64_t groups, Rng& rng) { return task->sample_conditions(groups, rng); }, task->null_condition()};
}

void check_conditions(const Config& cfg, const Task& task) {
  if (task.condition_count() > 0) return;
  for (const char* key : {"cfg", "eval_cfg"})
    if (cfg.table().find(key) && cfg.number(key) != 1.0)
      throw ConfigError(std::string("--") + (key[0] == 'c' ? "cfg" : "eval-cfg") +
                        ": classifier-free guidance needs a conditional task; task '" + task.name() + "' is not");
}

torch::Device setup_device(const Config& cfg) {
  if (cfg.integer("threads") > 0) set_threads(static_cast<int>(cfg.integer("threads")));
  const std::string& name = cfg.text("device");
  std::optional<torch::Device> device;
  try {
    device.emplace(name);
  } catch (const c10::Error&) {
    throw ConfigError("--device: '" + name + "' is not a torch device (use cpu, cuda or cuda:N)");
  }
  if (device->is_cuda() && !torch::cuda::is_available())
    throw ConfigError("--device " + name + ": CUDA is not available in this build or on this machine");
  return *device;
}

TaskPtr task_from(const Config& cfg) {
  const std::string& name = cfg.text("task");
  if (name == "mixture") {
    if (cfg.is_set("data_dir")) throw ConfigError("--data-dir applies to image tasks, not to task 'mixture'");
    return make_task(name, cfg.raw("mixture"));
  }
  if (cfg.table().find("mixture") && cfg.is_set("mixture")) throw ConfigError("mixture: applies to task 'mixture' only, not to '" + name + "'");
  if (cfg.is_set("data_dir")) return make_task(name, {{"data_dir", cfg.text("data_dir")}});
  return make_task(name, nullptr);
}

void apply_task_preset(Config& cfg) {
  const auto& preset = tasks().get(cfg.text("task")).preset;
  nlohmann::json known = nlohmann::json::object();
  for (const auto& kv : preset.items())
    if (cfg.table().find(kv.key())) known[kv.key()] = kv.value();
  cfg.apply_defaults(known);
}

RewardPtr resolve_reward(Config& cfg, const Task& task) {
  RewardPtr reward = make_reward(reward_spec_from(cfg), task.dim());
  cfg.set("reward", reward->spec());
  for (const char* k : {"reward_center", "reward_scale", "reward_height", "reward_coef", "reward_q", "reward_url",
                        "reward_timeout", "reward_retries"})
    cfg.set(k, nullptr);
  return reward;
}

RunBasics resolve_basics(Config& cfg) {
  if (!cfg.is_set("out"))
    throw ConfigError("--out: the run directory is required (a flag: a config file's out is not used)");
  apply_task_preset(cfg);
  const torch::Device device = setup_device(cfg);
  TaskPtr task = task_from(cfg);
  check_conditions(cfg, *task);
  RewardPtr reward = resolve_reward(cfg, *task);
  return {device, task, reward, cfg.number("multiplier")};
}

nlohmann::json reward_spec_from(const Config& cfg) {
  const auto& r = cfg.raw("reward");
  nlohmann::json spec;
  if (r.is_string()) {
    spec = {{"type", r.get<std::string>()}};
  } else if (r.is_object()) {
    spec = r;
  } else {
    throw ConfigError("reward: expected a reward name or a spec object, got " + r.dump());
  }
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"reward_center", "center"}, {"reward_scale", "scale"}, {"reward_height", "height"},
      {"reward_coef", "coef"},     {"reward_q", "q"},           {"reward_url", "url"},
      {"reward_timeout", "timeout"}, {"reward_retries", "retries"}};
  for (const auto& f : fields) {
    const auto& v = cfg.raw(f.first);
    if (v.is_null()) continue;
    spec[f.second] = v;
  }
  return spec;
}

nlohmann::json model_spec_from(const Config& cfg, const Task& task) {
  return cfg.is_set("model") ? cfg.raw("model") : task.default_model();
}

EvalOptions eval_options_from(const Config& cfg) {
  return EvalOptions()
      .samples(cfg.integer("eval_samples"))
      .pool(cfg.integer("eval_pool"))
      .sampler(SampleOptions().sampler(cfg.text("eval_sampler")).steps(cfg.integer("eval_steps")))
      .seed(static_cast<uint64_t>(cfg.integer("eval_seed")))
      .kl_samples(cfg.integer("eval_kl_samples"))
      .likelihood(LikelihoodOptions().steps(cfg.integer("eval_kl_steps")))
      .cfg(cfg.number("eval_cfg"))
      .judge(cfg.is_set("eval_classifier") ? cfg.text("eval_classifier") : std::string());
}

VelocityFieldPtr base_model(const Config& cfg, const Task& task, torch::Device device, JobIO io) {
  if (cfg.is_set("base")) {
    // A pretrain checkpoint holds "base"; a finetune checkpoint's "policy" can serve as a base too.
    const std::string path = resolve_model_file(cfg.text("base"));
    const auto meta = read_checkpoint_meta(path);
    const bool has_base = meta.contains("models") && meta["models"].contains("base");
    auto model = load_checkpoint_model(path, has_base ? "base" : "policy");
    model->to(device);
    model->eval();
    return model;
  }
  // The cache key covers everything that determines the pretrained weights.
  const nlohmann::json key = {{"format", 4},  // bump when a model's parameter layout or initialisation changes
                              {"task", task.spec()},
                              {"model", model_spec_from(cfg, task)},
                              {"steps", cfg.integer("pretrain_steps")},
                              {"batch", cfg.integer("pretrain_batch")},
                              {"lr", cfg.number("pretrain_lr")},
                              {"ema", cfg.number("pretrain_ema")},
                              {"label_dropout", cfg.number("pretrain_label_dropout")},
                              {"grad_clip", cfg.number("pretrain_grad_clip")},
                              {"seed", cfg.integer("pretrain_seed")}};
  std::ostringstream name;
  name << "base-" << task.name() << "-" << std::hex << std::setw(16) << std::setfill('0')
       << fnv1a(key.dump()) << ".safetensors";
  const fs::path path = fs::path(cache_dir(cfg)) / name.str();
  if (fs::exists(path)) {
    try {
      nlohmann::json meta;
      auto model = load_checkpoint_model(path.string(), "base", &meta);
      if (meta.value("pretrain", nlohmann::json()) == key) {
        io.log << "base model: cached " << path.string() << "\n";
        model->to(device);
        model->eval();
        return model;
      }
    } catch (const IOError& e) {
      io.log << "base model: ignoring unreadable cache entry (" << e.what() << ")\n";
    }
  }
  io.log << "base model: pretraining on task '" << task.name() << "' (cached afterwards)\n";
  double last_loss = 0;
  auto model = pretrain_base(cfg, task, device, io, [&](const PretrainRecord& r) { last_loss = r.loss; });
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) throw IOError(path.parent_path().string() + ": cannot create the cache directory");
  save_checkpoint(path.string(), {{"base", model.get()}}, {{"pretrain", key}, {"final_loss", last_loss}});
  return model;
}

VelocityFieldPtr pretrain_base(const Config& cfg, const Task& task, torch::Device device, JobIO io,
                               const std::function<void(const PretrainRecord&)>& on_step) {
  // The initial weights come from the pretraining seed too, so a seed fixes the base model.
  auto model = make_velocity_field(model_spec_from(cfg, task),
                                   static_cast<uint64_t>(cfg.integer("pretrain_seed")));
  model->to(device);
  Progress bar("pretrain", cfg.integer("pretrain_steps"), io.log, io.tty);
  double last_loss = 0;
  DataSampler data = [&](int64_t n, Rng& rng, Condition* cond) { return task.sample_data(n, rng, {}, cond); };
  pretrain_flow_matching(*model, data,
                         PretrainOptions()
                             .steps(cfg.integer("pretrain_steps"))
                             .batch(cfg.integer("pretrain_batch"))
                             .lr(cfg.number("pretrain_lr"))
                             .ema(cfg.number("pretrain_ema"))
                             .label_dropout(cfg.number("pretrain_label_dropout"))
                             .null_condition(task.null_condition())
                             .grad_clip(cfg.number("pretrain_grad_clip"))
                             .seed(static_cast<uint64_t>(cfg.integer("pretrain_seed"))),
                         [&](const PretrainRecord& r) {
                           last_loss = r.loss;
                           if (on_step) on_step(r);
                           bar.update(r.step, "loss " + fixed(r.loss));
                         });
  bar.finish("loss " + fixed(last_loss));
  return model;
}

RunStart start_run(const Config& cfg, const Task& task, torch::Device device, JobIO io) {
  RunDir::check(cfg.text("out"), cfg.boolean("overwrite"));
  VelocityFieldPtr base = cfg.is_set("base") ? base_model(cfg, task, device, io) : nullptr;
  RunDir run = RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  run.write_config(cfg.values(), cfg.given());
  if (!base) base = base_model(cfg, task, device, io);  // from the cache, or pretrained now
  return {std::move(run), std::move(base), "", nullptr};
}

void add_checkpoint_params(ParamTable& t) {
  t.group("Checkpoints and resume");
  t.text("resume", nullptr,
         "continue the run in this directory from its latest checkpoint, with its own configuration (flags "
         "may change only --steps, --checkpoint-every, --keep-checkpoints, --threads and --jobs)");
  t.flag_only("resume");
  t.integer("checkpoint_every", 0,
            "write a training checkpoint every N steps (0 = only at the end); each holds the whole state",
            0, 100000000);
  t.integer("keep_checkpoints", 3, "training checkpoints to keep, the newest (0 = all)", 0, 1000000);
  t.integer("max_bad_steps", 5,
            "a non-finite sample, reward, loss or gradient skips the step; this many in a row stop the run with "
            "a checkpoint", 1, 1000000);
}

Config resume_config(const Config& given, const std::set<std::string>& may_change) {
  const std::string dir = given.text("resume");
  if (given.is_set("out") && given.text("out") != dir)
    throw ConfigError("--resume continues " + dir + " in place: drop --out");
  if (given.boolean("overwrite")) throw ConfigError("--resume and --overwrite exclude each other");
  const std::string path = (fs::path(dir) / "config.json").string();
  if (!fs::is_directory(dir)) throw InputError(dir + ": no such run directory (--resume)");
  if (!fs::exists(path)) throw InputError(dir + ": not a ramflow run directory (no config.json)");
  Config cfg = Config::from_json(given.table(), read_json_file(path), path);
  // The keys the first invocation set: only they count as given, so that method and task presets apply
  // to the others as they did then.
  const std::string given_path = (fs::path(dir) / "config_given.json").string();
  if (!fs::exists(given_path)) throw InputError(dir + ": cannot be resumed (no config_given.json)");
  std::set<std::string> keys;
  const nlohmann::json first = read_json_file(given_path);
  if (!first.is_object()) throw InputError(given_path + ": expected a JSON object");
  for (const auto& [key, value] : first.items()) {
    if (!given.table().find(key)) throw InputError(given_path + ": unknown key '" + key + "'");
    keys.insert(key);
  }
  std::vector<std::string> flags;
  for (const auto& k : may_change) flags.push_back(given.table().find(k)->flag());
  const std::string allowed = join(flags);
  for (const auto& p : given.table().params()) {
    if (!given.is_explicit(p.key) || p.key == "resume" || p.key == "out" || p.key == "overwrite") continue;
    if (given.raw(p.key) == cfg.raw(p.key)) continue;
    if (!may_change.count(p.key))
      throw ConfigError("--resume: " + p.flag() + " " + given.raw(p.key).dump() + " differs from the run's " +
                        cfg.raw(p.key).dump() + "; a resumed run keeps its configuration (only " + allowed +
                        " may change)");
    cfg.set(p.key, given.raw(p.key));
    keys.insert(p.key);
  }
  cfg.set("out", dir);
  cfg.set("resume", dir);
  keys.insert("out");
  cfg.set_explicit_keys(keys);
  return cfg;
}

RunStart reopen_run(const Config& cfg, torch::Device device, JobIO io, const std::string& base_checkpoint) {
  RunDir run = RunDir::open(cfg.text("out"));
  if (!base_checkpoint.empty()) {
    VelocityFieldPtr base = load_checkpoint_model(base_checkpoint, "base");
    base->to(device);
    base->eval();
    run.write_config(cfg.values(), cfg.given());
    io.log << "resuming " << run.path() << "\n";
    return {std::move(run), std::move(base), "", nullptr};
  }
  const CheckpointSeries series(run.file("checkpoints"), cfg.integer("keep_checkpoints"));
  const std::string latest = series.latest();
  if (latest.empty())
    throw InputError(run.path() + ": no training checkpoint to resume from (checkpoints/step-*.safetensors)");
  // Read once: the base (the reference stored in it) now, the trainer's state when the trainer exists.
  auto file = std::make_shared<const SafetensorsFile>(load_safetensors(latest));
  const nlohmann::json meta = read_checkpoint_meta(*file, latest);
  if (!meta.contains("trainer")) throw InputError(latest + ": not a training checkpoint (no trainer state)");
  VelocityFieldPtr base = load_model(latest, meta, reference_name(meta), file.get());
  base->to(device);
  base->eval();
  run.write_config(cfg.values(), cfg.given());
  io.log << "resuming " << run.path() << " from " << latest << " (step " << meta.value("step", int64_t{0})
         << ")\n";
  return {std::move(run), std::move(base), latest, std::move(file)};
}

namespace {
// A LoRA policy's reference is its base with adapters off: "ref" names it when no "ref" is stored.
bool ref_is_lora_base(const nlohmann::json& meta) {
  const bool has_models = meta.contains("models") && meta["models"].is_object();
  return has_models && !meta["models"].contains("ref") && meta["models"].contains("policy") &&
         meta["models"]["policy"].value("type", std::string()) == "lora";
}
}  // namespace

std::string reference_name(const nlohmann::json& meta) {
  return ref_is_lora_base(meta) || meta["models"].contains("ref") ? "ref" : "base";
}

VelocityFieldPtr load_model(const std::string& path, const nlohmann::json& meta, const std::string& name,
                            const SafetensorsFile* file) {
  auto load = [&](const std::string& model) {
    return file ? load_checkpoint_model(*file, path, model) : load_checkpoint_model(path, model);
  };
  if (name == "ref" && ref_is_lora_base(meta)) return as_lora(*load("policy"))->base_ptr();
  return load(name);
}

void check_model(const Config& cfg, const Task& task) {
  auto model = make_velocity_field(model_spec_from(cfg, task));
  if (auto lora = lora_options_from(cfg)) lora_target_layers(*model, lora->targets());
}

std::string pick_model(const nlohmann::json& meta, const nlohmann::json& requested,
                       const std::string& path) {
  const bool has_models = meta.contains("models") && meta["models"].is_object();
  if (requested.is_string()) {
    const auto name = requested.get<std::string>();
    if (name == "ref" && ref_is_lora_base(meta)) return name;
    if (!has_models || !meta["models"].contains(name))
      throw InputError(path + ": checkpoint has no model '" + name + "'" + checkpoint_models_text(meta));
    return name;
  }
  for (const char* name : {"policy", "base"})
    if (has_models && meta["models"].contains(name)) return name;
  throw InputError(path + ": checkpoint has neither a 'policy' nor a 'base' model" + checkpoint_models_text(meta));
}

SamplePanel panel(const std::string& title, const torch::Tensor& samples) {
  auto x = samples.detach().to(torch::kCPU, torch::kFloat).reshape({samples.size(0), -1}).contiguous();
  SamplePanel p;
  p.title = title;
  p.dim = x.size(1);
  p.points.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
  return p;
}

SamplePanel panel(const std::string& title, const torch::Tensor& samples, const nlohmann::json& reward_spec) {
  SamplePanel p = panel(title, samples);
  std::function<void(const nlohmann::json&)> collect = [&](const nlohmann::json& spec) {
    if (!spec.is_object()) return;
    if (spec.contains("center") && spec["center"].is_array() && spec["center"].size() >= 2)
      p.marks.emplace_back(spec["center"][0].get<double>(), spec["center"][1].get<double>());
    if (spec.contains("terms") && spec["terms"].is_array())
      for (const auto& term : spec["terms"]) collect(term);
  };
  collect(reward_spec);
  if (!p.marks.empty()) p.marks_label = "reward centre";
  return p;
}

void class_grids(const std::string& path, const std::vector<torch::Tensor>& batches,
                 const std::vector<Condition>& conds, const Task& task, int64_t per_class) {
  TORCH_CHECK(conds.size() == 1 || conds.size() == batches.size(), "class_grids: ", conds.size(),
              " label tensors for ", batches.size(), " batches");
  const int64_t K = std::max<int64_t>(task.num_classes(), 1);
  std::vector<torch::Tensor> picked;
  for (size_t b = 0; b < batches.size(); ++b) {
    const auto x = batches[b].detach().cpu();                                  // [N, C, H, W]
    const auto cond = conds[conds.size() == 1 ? 0 : b];
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = K * per_class;
    auto grid = torch::full(shape, -1.0, x.options());                        // black where a class is short
    for (int64_t k = 0; k < K; ++k) {
      // The first per_class samples of class k (all samples for an unconditional task).
      auto ik = cond.defined() ? (cond.id().cpu() == k).nonzero().flatten() : torch::arange(x.size(0));
      const int64_t have = std::min(per_class, ik.size(0));
      if (have > 0) grid.narrow(0, k * per_class, have).copy_(x.index_select(0, ik.narrow(0, 0, have)));
    }
    picked.push_back(grid);
  }
  save_png_grid(path, picked, K, per_class);
}

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::ostringstream s;
  for (size_t k = 0; k < rows.size(); ++k) {
    for (size_t i = 0; i < rows[k].size(); ++i)
      s << std::left << std::setw(static_cast<int>(width[i]) + 2) << rows[k][i];
    s << "\n";
    if (k == 0) {
      size_t total = 0;
      for (auto w : width) total += w + 2;
      s << std::string(total, '-') << "\n";
    }
  }
  return s.str();
}

std::string fixed(double v, int digits) {
  if (std::isnan(v)) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

nlohmann::json json_number(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

nlohmann::json step_line(const StepRecord& rec) {
  nlohmann::json line = {{"step", rec.step},                 {"seconds", rec.seconds},
                         {"reward_mean", rec.reward_mean},   {"reward_std", rec.reward_std},
                         {"reward_min", rec.reward_min},     {"reward_max", rec.reward_max},
                         {"loss", rec.loss},                 {"grad_norm", rec.grad_norm},
                         {"nfe", rec.nfe},                   {"nfe_train", rec.nfe_train},
                         {"reward_evals", rec.reward_evals}};
  if (!rec.skipped.empty()) line["skipped"] = rec.skipped;
  for (const auto& kv : rec.metrics) line[kv.first] = kv.second;
  return line;
}

}  // namespace ramflow::jobs
