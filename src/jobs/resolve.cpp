// Building the pieces of a run from a config (see src/jobs/resolve.h).
#include "jobs/resolve.h"

#include <sstream>

#include <torch/torch.h>

#include "ramflow/decoded_reward.h"
#include "ramflow/dtypes.h"
#include "ramflow/errors.h"
#include "ramflow/jobs.h"
#include "ramflow/method.h"
#include "ramflow/runtime.h"
#include "ramflow/sd3_transformer.h"
#include "ramflow/strings.h"

namespace ramflow::jobs {

std::optional<LoraOptions> lora_options_from(const Config& cfg) {
  const int64_t rank = cfg.integer("lora_rank");
  if (rank == 0) {
    for (const char* key : {"lora_alpha", "lora_targets"})
      if (cfg.is_set(key))
        throw ConfigError(cfg.table().find(key)->flag() + " needs --lora-rank >= 1");
    return std::nullopt;
  }
  LoraOptions o;
  o.rank(rank).alpha(cfg.is_set("lora_alpha") ? cfg.number("lora_alpha")
                                              : static_cast<double>(rank));
  if (cfg.is_set("lora_targets")) {
    o.targets(split(cfg.text("lora_targets")));
  } else if (is_diffusers_base(cfg)) {
    o.targets(sd3_lora_targets());  // the attention projections, as Flow-GRPO and diffusers adapt
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
  const auto frozen = policy->frozen_in_post_training();
  for (auto& p : policy->named_parameters())
    p.value().set_requires_grad(!starts_with_any(p.key(), frozen));
  return {policy, frozen_copy(*base)};
}

TrainerOptions trainer_options_from(const Config& cfg, const Task& task) {
  return TrainerOptions()
      .sample_shape(task.sample_shape())
      .groups(cfg.integer("groups"))
      .group_size(cfg.integer("group_size"))
      .rollout(SampleOptions()
                   .sampler(cfg.text("rollout_sampler"))
                   .steps(cfg.integer("rollout_steps"))
                   .shift(cfg.number("rollout_shift"))
                   .grid(cfg.text("rollout_grid")))
      .lr(cfg.number("lr"))
      .weight_decay(cfg.number("weight_decay"))
      .beta1(cfg.number("beta1"))
      .beta2(cfg.number("beta2"))
      .grad_clip(cfg.number("grad_clip"))
      .minibatches(cfg.integer("minibatches"))
      .grad_accum(cfg.integer("grad_accum"))
      .old_decay(cfg.number("old_decay"))
      .old_ramp(cfg.number("old_ramp"))
      .eval_ema(cfg.number("eval_ema"))
      .cfg(cfg.number("cfg"))
      .seed(static_cast<uint64_t>(cfg.integer("seed")));
}

ConditionSource condition_source(TaskPtr task) {
  if (task->condition_count() == 0) return {};
  return {[task](int64_t groups, Rng& rng) { return task->sample_conditions(groups, rng); },
          task->null_condition()};
}

void check_conditions(const Config& cfg, const Task& task) {
  if (task.condition_count() > 0) return;
  for (const char* key : {"cfg", "eval_cfg"})
    if (cfg.table().find(key) && cfg.number(key) != 1.0)
      throw ConfigError(std::string("--") + (key[0] == 'c' ? "cfg" : "eval-cfg") +
                        ": classifier-free guidance needs a conditional task; task '" +
                        task.name() + "' is not");
}

torch::Device setup_device(const Config& cfg) {
  // 0: the process's count (the CLI sets every core, the tests one), through set_threads all the
  // same, which keeps OpenBLAS's pool out of torch's way.
  set_threads(cfg.integer("threads") > 0 ? static_cast<int>(cfg.integer("threads"))
                                         : at::get_num_threads());
  const std::string& name = cfg.text("device");
  std::optional<torch::Device> device;
  try {
    device.emplace(name);
  } catch (const c10::Error&) {
    throw ConfigError("--device: '" + name + "' is not a torch device (use cpu, cuda or cuda:N)");
  }
  if (device->is_cuda() && !torch::cuda::is_available())
    throw ConfigError("--device " + name +
                      ": CUDA is not available in this build or on this machine");
  return *device;
}

bool is_diffusers_base(const Config& cfg) {
  return cfg.table().find("base") && cfg.is_set("base") && is_diffusers_pipeline(cfg.text("base"));
}

std::optional<DiffusersPipeline> pipeline_from(const Config& cfg) {
  if (!is_diffusers_base(cfg)) return std::nullopt;
  return read_diffusers_pipeline(cfg.text("base"));
}

torch::Dtype dtype_from(const Config& cfg) {
  if (!cfg.table().find("dtype")) return torch::kFloat32;
  return parse_dtype(cfg.text("dtype"), "--dtype");
}

namespace {

/// The keys of task 'prompts', refused with any other task.
const std::vector<std::string>& prompt_keys() {
  static const std::vector<std::string> keys = {"prompts", "eval_prompts", "prompt_embeds",
                                                "height", "width"};
  return keys;
}

bool is_set_here(const Config& cfg, const std::string& key) {
  return cfg.table().find(key) && cfg.is_set(key) &&
         !(cfg.raw(key).is_number() && cfg.raw(key) == 0);
}

}  // namespace

TaskPtr prompt_task_from(const Config& cfg, std::optional<std::vector<int64_t>> latent_shape) {
  const auto pipeline = pipeline_from(cfg);
  if (!pipeline)
    throw ConfigError(
        "task 'prompts' post-trains a diffusers SD3 pipeline: --base must be its folder "
        "(model_index.json, transformer/, vae/, scheduler/)");
  if (!cfg.is_set("prompt_embeds"))
    throw ConfigError(
        "--prompt-embeds: required with a diffusers base (the prompts encoded by "
        "python/encode_prompts.py)");
  nlohmann::json params = {
      {"prompt_embeds", cfg.text("prompt_embeds")},
      {"latent_shape", latent_shape
                           ? *latent_shape
                           : pipeline->latent_shape(cfg.integer("height"), cfg.integer("width"))},
      {"context_dim", pipeline->transformer.joint_attention_dim()},
      {"pooled_dim", pipeline->transformer.pooled_projection_dim()}};
  for (const char* key : {"prompts", "eval_prompts"})
    if (cfg.table().find(key) && cfg.is_set(key)) params[key] = cfg.text(key);
  return make_task("prompts", params);
}

TaskPtr task_from(const Config& cfg) {
  const std::string& name = cfg.text("task");
  if (name == "prompts") return prompt_task_from(cfg);
  for (const auto& key : prompt_keys())
    if (is_set_here(cfg, key))
      throw ConfigError(cfg.table().find(key)->flag() +
                        " applies to task 'prompts' (a diffusers base), not to '" + name + "'");
  if (is_diffusers_base(cfg))
    throw ConfigError("--base " + cfg.text("base") +
                      " is a diffusers pipeline: its task is 'prompts', not '" + name + "'");
  if (name == "mixture") {
    if (cfg.is_set("data_dir"))
      throw ConfigError("--data-dir applies to image tasks, not to task 'mixture'");
    return make_task(name, cfg.raw("mixture"));
  }
  if (cfg.table().find("mixture") && cfg.is_set("mixture"))
    throw ConfigError("mixture: applies to task 'mixture' only, not to '" + name + "'");
  const bool words_set = cfg.table().find("words") && cfg.is_set("words");
  if (name == "words") {
    if (cfg.is_set("data_dir"))
      throw ConfigError(
          "--data-dir applies to image datasets, not to task 'words' (its word "
          "list: --words '{\"words\": FILE}')");
    return make_task(name, words_set ? cfg.raw("words") : nlohmann::json(nullptr));
  }
  if (words_set) throw ConfigError("--words applies to task 'words' only, not to '" + name + "'");
  if (cfg.is_set("data_dir")) return make_task(name, {{"data_dir", cfg.text("data_dir")}});
  return make_task(name, nullptr);
}

TaskPtr task_of_run(const nlohmann::json& run_cfg, const std::string& source) {
  if (!run_cfg.is_object() || !run_cfg.contains("task"))
    throw InputError(source + ": checkpoint metadata has no task");
  nlohmann::json keys = nlohmann::json::object();  // the keys task_from reads, as the run had them
  for (const char* key : {"task", "mixture", "words", "data_dir", "base", "prompts", "eval_prompts",
                          "prompt_embeds", "height", "width"})
    if (run_cfg.contains(key) && !run_cfg[key].is_null()) keys[key] = run_cfg[key];
  return task_from(Config::from_json(finetune_params(), keys, source));
}

void apply_presets(Config& cfg, const std::string& method) {
  auto apply = [&](const nlohmann::json& preset) {
    nlohmann::json known = nlohmann::json::object();
    for (const auto& kv : preset.items())
      if (cfg.table().find(kv.key())) known[kv.key()] = kv.value();
    cfg.apply_defaults(known);  // only keys the file and flags did not give
  };
  const auto pipeline = pipeline_from(cfg);
  if (pipeline) apply({{"task", "prompts"}});  // first: the task's preset depends on it
  if (!method.empty()) apply(methods().get(method).preset);
  const nlohmann::json& task_preset = tasks().get(cfg.text("task")).preset;
  // After the method's: the task's wins. Its "methods" entry holds settings per method, not
  // compare's --methods list.
  nlohmann::json general = task_preset;
  general.erase("methods");
  apply(general);
  // The task's settings for this method (its "methods" entry), over the task's general ones.
  if (!method.empty() && task_preset.contains("methods") && task_preset["methods"].contains(method))
    apply(task_preset["methods"][method]);
  if (pipeline)
    apply({{"rollout_grid", "diffusers"},
           {"rollout_shift", pipeline->shift},
           {"decoder", pipeline->decoder_spec(dtype_from(cfg))},
           {"eval", "reward"}});
}

DecoderPtr decoder_from(const Config& cfg, const Task& task) {
  if (!cfg.table().find("decoder") || !cfg.is_set("decoder")) return nullptr;
  const auto& spec = cfg.raw("decoder");
  if (spec.is_object() && spec.value("type", std::string()) == "identity") return nullptr;
  DecoderPtr decoder;
  try {
    decoder = make_decoder(spec, static_cast<uint64_t>(cfg.integer("decoder_seed")));
    decoder->decoded_shape(task.sample_shape());  // takes the task's samples?
  } catch (const ConfigError& e) {
    throw ConfigError("--decoder: " + std::string(e.what()) + " (task '" + task.name() + "')");
  }
  return decoder;
}

std::vector<int64_t> scored_shape(const Task& task, const DecoderPtr& decoder) {
  return decoder ? decoder->decoded_shape(task.sample_shape()) : task.sample_shape();
}

RewardPtr resolve_reward(Config& cfg, const Task& task, const DecoderPtr& decoder) {
  // The reward server's flags belong to --reward remote: given with another reward they would be
  // refused as an unknown field of its spec; name the flag instead.
  const nlohmann::json spec = reward_spec_from(cfg);
  const std::string type = spec.value("type", std::string());
  if (type != "remote")
    for (const char* k : {"reward_url", "reward_timeout", "reward_retries"})
      if (cfg.is_set(k))  // a run's config.json holds them as null
        throw ConfigError(cfg.table().find(k)->flag() + " applies to --reward remote, not to '" +
                          type + "'");
  int64_t dim = 1;
  for (int64_t s : scored_shape(task, decoder)) dim *= s;
  RewardPtr reward = make_reward(spec, dim);
  cfg.set("reward", reward->spec());
  for (const char* k : {"reward_center", "reward_scale", "reward_height", "reward_coef", "reward_q",
                        "reward_url", "reward_timeout", "reward_retries"})
    cfg.set(k, nullptr);
  return reward;
}

RunBasics resolve_basics(Config& cfg) {
  if (!cfg.is_set("out"))
    throw ConfigError(
        "--out: the run directory is required (a flag: a config file's out is not used)");
  apply_presets(cfg);
  const torch::Device device = setup_device(cfg);
  TaskPtr task = task_from(cfg);
  check_conditions(cfg, *task);
  DecoderPtr decoder = decoder_from(cfg, *task);
  if (decoder) decoder->to(device);
  RewardPtr reward = resolve_reward(cfg, *task, decoder);
  RewardPtr on_samples = decoder ? decoded_reward(decoder, reward) : reward;
  probe_reward(*on_samples, *task, device);
  return {device, task, decoder, reward, on_samples, cfg.number("multiplier")};
}

void probe_reward(const Reward& reward, const Task& task, torch::Device device) {
  std::vector<int64_t> shape = {2};
  for (int64_t s : task.sample_shape()) shape.push_back(s);
  Rng rng(0);  // its own stream: the run's draws are untouched
  const torch::Tensor x = rng.randn(shape).to(device);  // [2, *sample_shape]
  const Condition cond =
      task.condition_count() > 0 ? task.evaluation_conditions(2).to(device) : Condition();
  const std::string what = "reward '" + reward.spec().value("type", std::string("?")) +
                           "' on task '" + task.name() + "' (samples " + shape_text(shape) + ")";
  torch::Tensor r;
  try {
    torch::NoGradGuard no_grad;
    r = reward.score(x, cond);
  } catch (const ConfigError&) {
    throw;
  } catch (const c10::Error& e) {
    throw ConfigError(what + ": cannot score them: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw ConfigError(what + ": a probe failed: " + e.what());
  }
  if (r.dim() != 1 || r.size(0) != 2)
    throw ConfigError(what + ": scores of shape " + shape_text(r.sizes().vec()) + ", expected [2]");
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
  const std::vector<std::pair<std::string, std::string>> fields = {{"reward_center", "center"},
                                                                   {"reward_scale", "scale"},
                                                                   {"reward_height", "height"},
                                                                   {"reward_coef", "coef"},
                                                                   {"reward_q", "q"},
                                                                   {"reward_url", "url"},
                                                                   {"reward_timeout", "timeout"},
                                                                   {"reward_retries", "retries"}};
  for (const auto& f : fields) {
    const auto& v = cfg.raw(f.first);
    if (v.is_null()) continue;
    spec[f.second] = v;
  }
  return spec;
}

nlohmann::json model_spec_from(const Config& cfg, const Task& task) {
  if (const auto pipeline = pipeline_from(cfg)) {
    if (cfg.is_set("model"))
      throw ConfigError("--model: a diffusers base brings its own model (transformer/)");
    auto spec = pipeline->transformer_spec(dtype_from(cfg));
    if (cfg.table().find("grad_checkpoint") && cfg.boolean("grad_checkpoint"))
      spec["gradient_checkpointing"] = true;
    return spec;
  }
  for (const char* key : {"dtype", "grad_checkpoint"})
    if (cfg.table().find(key) && cfg.is_explicit(key) &&
        cfg.raw(key) != cfg.table().find(key)->default_value)
      throw ConfigError(cfg.table().find(key)->flag() +
                        " applies to a diffusers base (--base DIR)");
  return cfg.is_set("model") ? cfg.raw("model") : task.default_model();
}

EvalOptions eval_options_from(const Config& cfg) {
  return EvalOptions()
      .samples(cfg.integer("eval_samples"))
      .pool(cfg.integer("eval_pool"))
      .sampler(SampleOptions()
                   .sampler(cfg.text("eval_sampler"))
                   .steps(cfg.integer("eval_steps"))
                   // Evaluation samples on the rollouts' grid (a diffusers base: its scheduler's).
                   .shift(cfg.table().find("rollout_shift") ? cfg.number("rollout_shift") : 1.0)
                   .grid(cfg.table().find("rollout_grid") ? cfg.text("rollout_grid") : "uniform"))
      .seed(static_cast<uint64_t>(cfg.integer("eval_seed")))
      .kl_samples(cfg.integer("eval_kl_samples"))
      .likelihood(LikelihoodOptions().steps(cfg.integer("eval_kl_steps")))
      .cfg(cfg.number("eval_cfg"))
      .judge(cfg.is_set("eval_classifier") ? cfg.text("eval_classifier") : std::string())
      .target(!cfg.table().find("eval") || cfg.text("eval") == "exact");
}

void check_model(const Config& cfg, const Task& task) {
  // A diffusers base is read when the run starts (building it here would read its weights twice);
  // its LoRA targets are checked then, before any compute.
  if (is_diffusers_base(cfg)) return;
  auto model = make_velocity_field(model_spec_from(cfg, task));
  if (auto lora = lora_options_from(cfg)) lora_target_layers(*model, lora->targets());
}

}  // namespace ramflow::jobs

namespace ramflow {

Config with_presets(const Config& cfg) {
  Config out = cfg;
  if (!cfg.table().find("task")) return out;
  const bool one_method = cfg.table().find("method") != nullptr;
  jobs::apply_presets(out, one_method ? cfg.text("method") : "");
  return out;
}

}  // namespace ramflow
