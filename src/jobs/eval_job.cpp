// `ramflow eval`: evaluates a checkpoint against its reference ("ref", else "base"): by default
// against the exact target p* ∝ p_ref exp(m r) too (--eval exact), or the rewards alone (--eval
// reward). Task, reward and m default to the checkpoint's own config; the reward flags and
// --multiplier evaluate it under another objective.
#include <torch/torch.h>

#include "jobs/params.h"
#include "jobs/report.h"
#include "jobs/resolve.h"
#include "jobs/run_start.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/run_dir.h"

namespace ramflow {

ParamTable eval_params() {
  ParamTable t;
  t.group("Run");
  t.text("checkpoint", nullptr, "checkpoint to evaluate (required)");
  t.text("model", nullptr, "model inside the checkpoint (default: policy, else base)");
  t.text("out", nullptr, "also write the results as JSON here");
  t.text("device", "cpu", "torch device: cpu, cuda or cuda:N");
  t.integer("threads", 0, "CPU threads for torch (0 = all cores)", 0, 1024);
  jobs::add_reward_params(t, /*with_defaults=*/false);
  jobs::add_eval_params(t);
  return t;
}

nlohmann::json run_eval(const Config& cfg_in, JobIO io) {
  if (!cfg_in.is_set("checkpoint")) throw ConfigError("--checkpoint: required");
  if (cfg_in.text("eval") == "none")
    throw ConfigError("--eval none: the eval job evaluates; use exact or reward");
  if (cfg_in.is_set("out")) prepare_output_file(cfg_in.text("out"), "--out");
  const torch::Device device = jobs::setup_device(cfg_in);
  const std::string path = cfg_in.text("checkpoint");
  const auto meta = read_checkpoint_meta(path);
  const std::string name = jobs::pick_model(meta, cfg_in.raw("model"), path);
  auto model = jobs::load_model(path, meta, name);
  auto* lora = as_lora(*model);
  // The reference: a LoRA policy's own base (adapters off, no second read), the stored "ref", or
  // "base".
  auto ref = lora ? lora->base_ptr() : jobs::load_model(path, meta, jobs::reference_name(meta));
  model->to(device);
  ref->to(device);
  model->eval();
  ref->eval();

  // Fill reward and multiplier from the checkpoint's config unless given on the command line.
  const nlohmann::json run_cfg = meta.value("config", nlohmann::json::object());
  TaskPtr task = jobs::task_of_run(run_cfg, path);
  Config cfg = cfg_in;
  // The run's evaluation kind and guidance unless given: a run on a diffusers pipeline has no
  // exact target (its evaluation is "reward").
  if (run_cfg.value("eval", std::string()) == "reward") cfg.apply_defaults({{"eval", "reward"}});
  if (run_cfg.contains("eval_cfg")) cfg.apply_defaults({{"eval_cfg", run_cfg["eval_cfg"]}});
  if (!cfg.is_set("reward")) {
    if (!run_cfg.contains("reward"))
      throw ConfigError("--reward: the checkpoint was not trained against a reward; give one");
    cfg.set("reward", run_cfg["reward"]);
  }
  if (!cfg.is_set("multiplier")) {
    if (!run_cfg.contains("multiplier"))
      throw ConfigError("--multiplier: the checkpoint has none; give one");
    cfg.set("multiplier", run_cfg["multiplier"]);
  }
  // The decoder the checkpoint's run used: rewards see decoded samples.
  const DecoderPtr decoder = decoder_from_meta(meta);
  int64_t dim = 1;
  for (int64_t s : jobs::scored_shape(*task, decoder)) dim *= s;
  RewardPtr reward = make_reward(jobs::reward_spec_from(cfg), dim);
  const double m = cfg.number("multiplier");
  // Evaluation samples on the run's rollout grid, as the run's own evaluations did (a diffusers
  // base: its scheduler's).
  EvalOptions options = jobs::eval_options_from(cfg);
  options.sampler()
      .shift(run_cfg.value("rollout_shift", 1.0))
      .grid(run_cfg.value("rollout_grid", std::string("uniform")));
  Evaluator evaluator(task, reward, m, *ref, options, decoder);
  const EvalResult ref_eval = evaluator.evaluate(*ref);
  const EvalResult eval = evaluator.evaluate(*model);

  nlohmann::json out = {{"checkpoint", path},
                        {"model", name},
                        {"task", task->name()},
                        {"reward", reward->spec()},
                        {"multiplier", m},
                        {"evaluation", cfg.text("eval")},
                        {"reward_reference", ref_eval.reward_mean},
                        {"reward_model", eval.reward_mean},
                        {"diversity_reference", ref_eval.diversity},
                        {"diversity_model", eval.diversity}};
  if (!eval.reward_terms.empty()) out["reward_terms_model"] = eval.reward_terms;
  std::vector<std::vector<std::string>> rows;
  if (evaluator.has_target()) {
    const auto& target = evaluator.target();
    out["reward_optimal"] = target.reward_optimal;
    out["distance_reference"] = ref_eval.distance;
    out["distance_model"] = eval.distance;
    out["target_ess"] = target.ess;
    if (target.mode_masses.defined()) {
      out["mode_masses_model"] = jobs::to_vector(eval.mode_masses);
      out["mode_masses_target"] = jobs::to_vector(target.mode_masses);
    }
    if (target.closed_form) out["reward_optimal_closed_form"] = target.reward_optimal_closed_form;
    rows = {{"", "reference", name, "exact target"},
            {"reward", jobs::fixed(ref_eval.reward_mean), jobs::fixed(eval.reward_mean),
             jobs::fixed(target.reward_optimal)},
            {"distance to target", jobs::fixed(ref_eval.distance, 4), jobs::fixed(eval.distance, 4),
             "0"}};
  } else {
    rows = {{"", "reference", name},
            {"reward", jobs::fixed(ref_eval.reward_mean), jobs::fixed(eval.reward_mean)},
            {"diversity", jobs::fixed(ref_eval.diversity), jobs::fixed(eval.diversity)}};
  }
  if (cfg.is_set("out")) write_json_atomic(cfg.text("out"), out);
  io.results() << jobs::table(rows);
  return out;
}

}  // namespace ramflow
