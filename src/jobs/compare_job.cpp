// `ramflow compare`: methods x seeds on one task at matched settings, measured against the exact target.
//   1. resolve everything (task, reward, every method with its preset) before any compute
//   2. one base model and one Evaluator (fixed evaluation noise, exact target) shared by every run
//   3. the runs, `jobs` at a time (one thread each), each a Trainer evaluated every eval_every steps
//   4. per method, mean and std over seeds: final and peak reward, fraction of the way to
//      reward_optimal, distance to the exact target, diversity, steps and seconds to a target reward,
//      cost per step; report.md, report.json, summary.json and plots
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include <torch/torch.h>

#include "jobs/run_driver.h"
#include "jobs/setup.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/method.h"
#include "ramflow/metrics.h"
#include "ramflow/run_dir.h"
#include "ramflow/stop.h"
#include "ramflow/trainer.h"
#include "ramflow/training_checkpoint.h"

namespace ramflow {

ParamTable compare_params() {
  ParamTable t;
  jobs::add_run_params(t, /*out_is_dir=*/true);
  jobs::add_task_params(t);
  jobs::add_pretrain_params(t);
  jobs::add_reward_params(t, /*with_defaults=*/true);
  t.group("Comparison");
  t.text("methods", "ram,flow-grpo,adjoint-matching,nft,draft",
         "comma-separated methods (" + methods().joined_names() + ")");
  t.integer("seeds", 3, "seeds per method: seed, seed + 1, ...", 1, 1000);
  t.number("budget_seconds", 0.0, "wall-clock training budget per run, on top of --steps (0 = none)", 0, 1e9);
  t.text("target_method", "flow-grpo",
         "the baseline whose peak evaluation reward (mean over seeds) is the target reward");
  t.number("target_reward", nullptr, "the target reward (overrides target_method)", -1e9, 1e9);
  t.integer("jobs", 0, "runs at a time, one thread each (0 = one per core)", 0, 1024);
  t.text("sweep", nullptr,
         "KEY=V1,V2,... crossed with methods and seeds; several separated by ';' (e.g. "
         "'multiplier=5,20,100;grpo_kl=0.01,0.1,1'). A method key applies to the methods that read it; a "
         "rollout or optimisation key to every method");
  jobs::add_training_params(t, /*with_method=*/false);
  jobs::add_eval_params(t);
  jobs::add_checkpoint_params(t);
  t.integer("eval_every", 50, "evaluate every N steps for the curves", 1, 100000000);
  t.integer("eval_curve_samples", 1000, "endpoints per evaluation", 2, 1 << 22);
  return t;
}

namespace {

// One run's evaluation curve (index 0 is the base model, before training).
struct Curve {
  std::string method, variant;  // the registered method; its label with the swept values
  int64_t seed = 0;
  std::vector<double> step, seconds, nfe, reward_evals, reward, distance, distance_base, diversity;
  double kl_to_base = std::nan("");  // at the final evaluation
  double accuracy = std::nan(""), frechet = std::nan("");  // image tasks: at the final evaluation
  double ms_per_step = 0;
  std::string error;  // non-empty if the run failed
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

nlohmann::json stat_json(const MeanStd& s) {
  return {{"mean", jobs::json_number(s.mean)}, {"std", jobs::json_number(s.std)}, {"n", s.n}};
}
std::string stat_text(const MeanStd& s, int digits = 3) {
  if (s.n == 0) return "-";
  return jobs::fixed(s.mean, digits) + " ± " + jobs::fixed(s.std, digits);
}

// The first evaluation at which the reward reaches `target`: its step and seconds (NaN if never).
std::pair<double, double> time_to(const Curve& c, double target) {
  for (size_t i = 0; i < c.reward.size(); ++i)
    if (c.reward[i] >= target) return {c.step[i], c.seconds[i]};
  return {std::nan(""), std::nan("")};
}

// Mean over the seeds of one method's curves, point by point (the curves share their eval steps).
std::vector<double> mean_of(const std::vector<const Curve*>& runs, std::vector<double> Curve::*field) {
  size_t n = SIZE_MAX;
  for (const Curve* c : runs) n = std::min(n, (c->*field).size());
  std::vector<double> out(n == SIZE_MAX ? 0 : n, 0.0);
  for (const Curve* c : runs)
    for (size_t i = 0; i < out.size(); ++i) out[i] += (c->*field)[i] / static_cast<double>(runs.size());
  return out;
}

// mean ± std over the runs, pointwise, as the band [mean - std, mean + std] (empty for a single run).
std::pair<std::vector<double>, std::vector<double>> band_of(const std::vector<const Curve*>& runs,
                                                            std::vector<double> Curve::*field) {
  if (runs.size() < 2) return {};
  const auto mean = mean_of(runs, field);
  std::vector<double> lo(mean.size()), hi(mean.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    std::vector<double> at_i;
    for (const Curve* c : runs) at_i.push_back((c->*field)[i]);
    const double sd = mean_std(at_i).std;
    lo[i] = mean[i] - sd;
    hi[i] = mean[i] + sd;
  }
  return {lo, hi};
}

// One configuration of a method: its swept values applied to its config.
struct Variant {
  std::string label, method;
  nlohmann::json sweep = nlohmann::json::object();  // key -> value
  Config cfg;
  nlohmann::json options;  // the method's resolved options under cfg
};

// Parses `sweep` ("k=v1,v2;k2=...") into keys and typed, validated values.
std::vector<std::pair<std::string, std::vector<nlohmann::json>>> parse_sweeps(const Config& cfg) {
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> out;
  if (!cfg.is_set("sweep")) return out;
  std::stringstream in(cfg.text("sweep"));
  for (std::string part; std::getline(in, part, ';');) {
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    if (eq == std::string::npos) throw ConfigError("--sweep: '" + part + "' is not KEY=V1,V2,...");
    std::string key = part.substr(0, eq);
    std::replace(key.begin(), key.end(), '-', '_');
    const Param* p = cfg.table().find(key);
    if (!p) {
      std::vector<std::string> keys;
      for (const auto& q : cfg.table().params()) keys.push_back(q.key);
      const auto hint = closest_name(key, keys);
      throw ConfigError("--sweep: unknown key '" + key + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
    std::vector<nlohmann::json> values;
    for (const auto& text : split_list(part.substr(eq + 1))) values.push_back(parse_flag_value(*p, text));
    if (values.empty()) throw ConfigError("--sweep: no values for '" + key + "'");
    for (const auto& [k, v] : out)
      if (k == key) throw ConfigError("--sweep: '" + key + "' is swept twice");
    out.emplace_back(key, std::move(values));
  }
  return out;
}

std::string value_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

double num_of(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

// One evaluation of a run as its metrics line; add_point() reads it back into the curve, so that a resumed
// run's curve is rebuilt from its metrics.jsonl exactly as it was built.
void add_point(Curve& c, const nlohmann::json& e) {
  c.step.push_back(num_of(e, "eval_step"));
  c.seconds.push_back(num_of(e, "seconds"));
  c.nfe.push_back(num_of(e, "nfe"));
  c.reward_evals.push_back(num_of(e, "reward_evals"));
  c.reward.push_back(num_of(e, "reward"));
  c.distance.push_back(num_of(e, "distance"));
  c.distance_base.push_back(num_of(e, "distance_from_base"));
  c.diversity.push_back(num_of(e, "diversity"));
  if (e.value("final", false)) {
    c.kl_to_base = num_of(e, "kl_to_base");
    c.accuracy = num_of(e, "accuracy");
    c.frechet = num_of(e, "frechet_distance");
  }
}

nlohmann::json curve_json(const Curve& c, const nlohmann::json& sweep) {
  return {{"method", c.method},       {"variant", c.variant},
          {"sweep", sweep},           {"seed", c.seed},
          {"error", c.error},         {"step", c.step},
          {"seconds", c.seconds},     {"nfe", c.nfe},
          {"reward_evals", c.reward_evals}, {"reward", c.reward},
          {"distance", c.distance},   {"distance_from_base", c.distance_base},
          {"diversity", c.diversity}, {"kl_to_base", jobs::json_number(c.kl_to_base)},
          {"accuracy", jobs::json_number(c.accuracy)}, {"frechet_distance", jobs::json_number(c.frechet)},
          {"ms_per_step", c.ms_per_step}};
}

Curve curve_from_json(const nlohmann::json& j) {
  Curve c;
  c.method = j.at("method").get<std::string>();
  c.variant = j.at("variant").get<std::string>();
  c.seed = j.at("seed").get<int64_t>();
  c.error = j.at("error").get<std::string>();
  auto list = [&](const char* key) {
    std::vector<double> v;
    for (const auto& x : j.at(key)) v.push_back(x.is_number() ? x.get<double>() : std::nan(""));
    return v;
  };
  c.step = list("step");
  c.seconds = list("seconds");
  c.nfe = list("nfe");
  c.reward_evals = list("reward_evals");
  c.reward = list("reward");
  c.distance = list("distance");
  c.distance_base = list("distance_from_base");
  c.diversity = list("diversity");
  c.kl_to_base = num_of(j, "kl_to_base");
  c.accuracy = num_of(j, "accuracy");
  c.frechet = num_of(j, "frechet_distance");
  c.ms_per_step = num_of(j, "ms_per_step");
  return c;
}

// A run's directory name: its label and seed with every other character than [A-Za-z0-9.-] as '_'.
std::string run_slug(const std::string& variant, int64_t seed) {
  std::string s = variant + "-seed" + std::to_string(seed);
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-') ch = '_';
  return s;
}

}  // namespace

nlohmann::json run_compare(const Config& cfg_in, JobIO io) {
  const auto wall_start = std::chrono::steady_clock::now();
  // --- 1. resolve and validate ----------------------------------------------------------------------
  // --resume DIR: DIR's own configuration; only these keys may change.
  const bool resuming = cfg_in.is_set("resume");
  Config cfg = resuming ? jobs::resume_config(cfg_in, {"steps", "checkpoint_every", "keep_checkpoints", "threads",
                                                       "jobs"})
                        : cfg_in;
  const jobs::RunBasics basics = jobs::resolve_basics(cfg);
  const torch::Device& device = basics.device;
  const TaskPtr& task = basics.task;
  const RewardPtr& reward = basics.reward;
  const double m = basics.multiplier;
  auto names = split_list(cfg.text("methods"));
  if (names.empty()) throw ConfigError("--methods: no method given");
  if (!cfg.is_explicit("methods") && !reward->differentiable()) {
    // The default list runs every method that applies: those that differentiate the reward do not.
    std::vector<std::string> kept;
    for (const auto& name : names) {
      Config c = cfg;
      c.apply_defaults(methods().get(name).preset);
      if (methods().get(name).make(c)->needs_reward_gradient())
        io.log << "compare: skipping " << name << ": it differentiates the reward, and reward '"
               << reward->spec().value("type", std::string("?")) << "' is not differentiable\n";
      else
        kept.push_back(name);
    }
    names = kept;
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (!methods().contains(names[i]))
      throw ConfigError("--methods: unknown method '" + names[i] + "' (choose from " + methods().joined_names() + ")");
    if (std::find(names.begin(), names.begin() + i, names[i]) != names.begin() + i)
      throw ConfigError("--methods: '" + names[i] + "' is listed twice");
  }
  check_method_keys(cfg, names);
  // Each method's variants: the cross product of the sweeps that apply to it. A method key applies to
  // the methods that read it; a rollout or optimisation key to every method.
  const auto sweeps = parse_sweeps(cfg);
  std::map<std::string, size_t> sweep_users;  // key -> how many of the methods it applies to
  std::vector<Variant> variants;
  for (const auto& name : names) {
    const auto reads = method_keys(name, cfg.table());
    std::vector<const std::pair<std::string, std::vector<nlohmann::json>>*> mine;
    for (const auto& sw : sweeps) {
      const std::string& group = cfg.table().find(sw.first)->group;
      if (reads.count(sw.first) || group == "Rollouts" || group == "Optimisation") {
        mine.push_back(&sw);
        ++sweep_users[sw.first];
      }
    }
    std::vector<nlohmann::json> combos = {nlohmann::json::object()};
    for (const auto* sw : mine) {
      std::vector<nlohmann::json> next;
      for (const auto& c : combos)
        for (const auto& v : sw->second) {
          auto n = c;
          n[sw->first] = v;
          next.push_back(n);
        }
      combos = next;
    }
    for (const auto& combo : combos) {
      std::string label = name, sep = " ";
      for (const auto* sw : mine) {
        label += sep + sw->first + "=" + value_text(combo[sw->first]);
        sep = ", ";
      }
      Config c = cfg;
      c.apply_defaults(methods().get(name).preset);
      jobs::apply_task_preset(c);                      // the task's preset wins over the method's
      for (const auto& [k, v] : combo.items()) c.set(k, v);  // a swept value wins over the presets
      auto probe = methods().get(name).make(c);                // validates the method's keys
      Trainer::check(jobs::trainer_options_from(c, *task), *probe, *reward);
      variants.push_back(Variant{label, name, combo, std::move(c), probe->options()});
    }
  }
  for (const auto& sw : sweeps)
    if (sweep_users[sw.first] == 0)
      throw ConfigError("--sweep: '" + sw.first + "' is neither read by any of --methods nor a rollout or "
                        "optimisation key");
  const bool fixed_target = cfg.is_set("target_reward");
  std::string target_variant = cfg.text("target_method");
  // Without the default target method (flow-grpo) among --methods, and none asked for, the target is
  // 0.9 of the way from the base reward to reward_optimal: meaningful for any set of methods.
  bool fraction_target = false;
  if (!fixed_target && !cfg.is_explicit("target_method")) {
    bool present = false;
    for (const auto& v : variants) present = present || v.method == target_variant || v.label == target_variant;
    fraction_target = !present;
  }
  constexpr double kTargetFraction = 0.9;
  if (!fixed_target && !fraction_target) {
    // The variant of that label; else the target method's variant whose swept values are the ones it
    // runs with unswept (its preset or default, e.g. flow-grpo's grpo_kl 0.1); else its first.
    const Variant* found = nullptr;
    for (const auto& v : variants)
      if (v.label == target_variant) found = &v;
    if (!found && methods().contains(target_variant)) {
      Config plain = cfg;
      plain.apply_defaults(methods().get(target_variant).preset);
      for (const auto& v : variants) {
        bool same = v.method == target_variant;
        for (const auto& [k, value] : v.sweep.items()) same = same && plain.raw(k) == value;
        if (same && !found) found = &v;
      }
    }
    for (const auto& v : variants)
      if (!found && v.method == target_variant) found = &v;
    if (!found)
      throw ConfigError("--target-method: '" + target_variant +
                        "' is not among --methods; add it or give --target-reward");
    target_variant = found->label;
  }
  jobs::check_model(cfg, *task);

  // --- 2. run directory, shared base model and evaluation -------------------------------------------
  // The base model is saved in the directory: a resumed comparison needs neither the cache nor pretraining.
  std::string base_file = (std::filesystem::path(cfg.text("out")) / "checkpoints" / "base.safetensors").string();
  jobs::RunStart start =
      resuming ? jobs::reopen_run(cfg, device, io, base_file) : jobs::start_run(cfg, *task, device, io);
  RunDir& run = start.run;
  const VelocityFieldPtr& base = start.base;
  if (!resuming) save_checkpoint(base_file, {{"base", base.get()}}, {{"config", cfg.values()}});
  std::error_code fs_error;
  std::filesystem::remove(run.file("summary.json"), fs_error);  // a resumed comparison is incomplete again
  Evaluator evaluator(task, reward, m, *base, jobs::eval_options_from(cfg));
  const ExactTarget& target = evaluator.target();
  const int64_t n_eval = cfg.integer("eval_curve_samples");
  // The runs go in parallel, one CPU thread each; the base row is evaluated under the same thread count,
  // so that its samples are bit for bit those of a run's step 0 (a matrix product's summation order can
  // depend on the threads).
  const int64_t n_runs = static_cast<int64_t>(variants.size()) * cfg.integer("seeds");
  int64_t jobs_n = cfg.integer("jobs");
  if (jobs_n == 0) jobs_n = std::max<int64_t>(1, std::thread::hardware_concurrency());
  jobs_n = std::min<int64_t>(jobs_n, n_runs);
  if (device.is_cpu()) set_threads(1);
  const EvalResult before = evaluator.evaluate(*base, n_eval);
  const torch::Tensor base_samples = before.samples.reshape({before.n, -1});
  const double base_self_distance = mean_cross_distance(base_samples, base_samples);
  const double target_diversity = [&] {
    Rng rng(static_cast<uint64_t>(cfg.integer("eval_seed")) + 11);
    return mean_pair_distance(evaluator.target_samples(n_eval, rng).reshape({n_eval, -1}));
  }();
  io.log << "exact target: reward_optimal " << jobs::fixed(target.reward_optimal) << ", base "
         << jobs::fixed(before.reward_mean) << ", effective sample size " << jobs::fixed(target.ess, 0) << "\n";
  // The target reward where it is known before the runs (given, or a fraction of the way to the optimum).
  double target_reward = fixed_target ? cfg.number("target_reward")
                                      : before.reward_mean + kTargetFraction * (target.reward_optimal - before.reward_mean);
  if (fixed_target)
    io.log << "target reward " << jobs::fixed(target_reward) << " (--target-reward)\n";
  else if (fraction_target)
    io.log << "target reward " << jobs::fixed(target_reward) << ": 0.9 of the way from the base to reward_optimal ("
           << cfg.text("target_method") << ", the default --target-method, is not among --methods)\n";
  else
    io.log << "target reward: the peak of " << target_variant << ", mean over seeds (known when its runs end)\n";

  // --- 3. the runs -------------------------------------------------------------------------------------
  const int64_t seeds = cfg.integer("seeds"), every = cfg.integer("eval_every");
  const double budget = cfg.number("budget_seconds");
  std::vector<Curve> curves;
  for (const auto& v : variants)
    for (int64_t s = 0; s < seeds; ++s) {
      Curve c;
      c.method = v.method;
      c.variant = v.label;
      c.seed = cfg.integer("seed") + s;
      curves.push_back(c);
    }
  std::mutex log_mutex;
  auto say = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mutex);
    io.log << line << "\n" << std::flush;
  };
  say("compare: " + std::to_string(variants.size()) + " configurations of " + std::to_string(names.size()) +
      " methods x " + std::to_string(seeds) + " seeds, " + std::to_string(cfg.integer("steps")) +
      " steps each, " + std::to_string(jobs_n) + " at a time");

  // One evaluation as the run's metrics line (add_point reads it into the curve).
  auto evaluate = [&](double step, const StepRecord& rec, VelocityFieldImpl& model, bool final) {
    const EvalResult e = evaluator.evaluate(model, n_eval, final);
    const auto x = e.samples.reshape({e.n, -1});
    // Energy distance from the base model's samples on the same noise, as a V-statistic (diagonal
    // pairs included): 2 E|X - B| - E|X - X'| - E|B - B'|, every term by the same cross-distance sum, so
    // that it is exactly 0 when the samples are the base's whatever the kernels' summation order.
    const double from_base = std::max(0.0, 2.0 * mean_cross_distance(x, base_samples) -
                                               mean_cross_distance(x, x) - base_self_distance);
    nlohmann::json line = {{"eval_step", step},
                           {"seconds", rec.seconds},
                           {"nfe", static_cast<double>(rec.nfe) + rec.nfe_train},  // rollout + training, per endpoint
                           {"reward_evals", rec.reward_evals},
                           {"reward", jobs::json_number(e.reward_mean)},
                           {"distance", jobs::json_number(e.distance)},
                           {"distance_from_base", jobs::json_number(from_base)},
                           {"diversity", jobs::json_number(e.diversity)}};
    if (final) {
      line["final"] = true;
      line["kl_to_base"] = jobs::json_number(e.kl_to_base);
      if (e.image) {
        line["accuracy"] = jobs::json_number(e.image->accuracy);
        line["frechet_distance"] = jobs::json_number(e.image->frechet_distance);
      }
    }
    return line;
  };
  std::map<std::string, const Variant*> variant_of;
  for (const auto& v : variants) variant_of[v.label] = &v;
  // Each run in its own directory runs/<label>-seed<k>/: config.json, metrics.jsonl, checkpoints/, and
  // result.json (its curve) once it has finished.
  auto run_one = [&](Curve& c) {
    Config mc = variant_of.at(c.variant)->cfg;
    mc.set("seed", c.seed);
    const int64_t steps = mc.integer("steps");
    const std::string dir = run.file("runs/" + run_slug(c.variant, c.seed));
    const std::string result_file = dir + "/result.json";
    if (resuming && std::filesystem::exists(result_file)) {
      Curve done = curve_from_json(read_json_file(result_file));
      if (done.error.empty() && !done.step.empty() && done.step.back() == static_cast<double>(steps)) {
        c = done;
        say("  " + c.variant + " seed " + std::to_string(c.seed) + ": finished before, reused");
        return;
      }
    }
    std::filesystem::create_directories(dir);
    std::filesystem::remove(result_file, fs_error);
    write_json_atomic(dir + "/config.json", mc.values());
    RunDir rd = RunDir::open(dir);
    // Each run its own copy of the base: LoRA adapters write their weights into the base's layers
    // during a forward call, so parallel runs must not share one.
    auto [policy, ref] = jobs::policy_from(mc, clone_velocity_field(*base));
    Trainer trainer(policy, ref, reward, methods().get(c.method).make(mc),
                    jobs::trainer_options_from(mc, *task), jobs::condition_source(task));
    CheckpointSeries series(rd.file("checkpoints"), mc.integer("keep_checkpoints"));
    const std::string latest = resuming ? series.latest() : "";
    bool evaluated_at_start = true;
    if (!latest.empty()) {
      const jobs::Resumed resumed = jobs::resume(trainer, load_safetensors(latest), latest, rd);
      evaluated_at_start = resumed.evaluated_at_step;
      for (const auto& line : resumed.records)
        if (line.contains("eval_step")) add_point(c, line);
      say("  " + c.variant + " seed " + std::to_string(c.seed) + ": resumed at step " +
          std::to_string(trainer.steps_done()));
    } else {
      rd.rewind_metrics(-1);  // a fresh start: nothing of an earlier attempt
      const auto line = evaluate(0, StepRecord{}, *base, false);
      rd.append_metrics(line);
      add_point(c, line);
    }
    jobs::DriveHooks hooks;
    hooks.on_step = [&](const StepRecord& rec) { rd.append_metrics(jobs::step_line(rec)); };
    hooks.on_eval = [&](int64_t s) {
      const auto line = evaluate(static_cast<double>(s), trainer.totals(), trainer.eval_model(), false);
      rd.append_metrics(line);
      add_point(c, line);
      say("  " + c.variant + " seed " + std::to_string(c.seed) + "  step " + std::to_string(s) + "/" +
          std::to_string(steps) + "  reward " + jobs::fixed(c.reward.back()) + "  distance " +
          jobs::fixed(c.distance.back(), 3));
    };
    jobs::DriveOptions options;
    options.steps = steps;
    options.eval_every = every;
    options.budget_seconds = budget;
    options.checkpoint_every = mc.integer("checkpoint_every");
    options.meta = {{"config", mc.values()}, {"method", c.method}};
    options.max_bad_steps = mc.integer("max_bad_steps");
    options.resume_hint = "ramflow compare --resume " + run.path();
    options.evaluated_at_start = evaluated_at_start;
    hooks.warn = [&](const std::string& text) { say("  " + c.variant + " seed " + std::to_string(c.seed) + ": warning: " + text); };
    const jobs::DriveResult driven = jobs::drive(trainer, series, options, hooks);
    if (driven.end == jobs::DriveEnd::kStopped) {
      c.error = "stopped";
      return;
    }
    const StepRecord totals = trainer.totals();
    const auto line = evaluate(static_cast<double>(totals.step), totals, trainer.eval_model(), true);
    rd.append_metrics(line);
    add_point(c, line);
    say("  " + c.variant + " seed " + std::to_string(c.seed) + "  step " + std::to_string(totals.step) + "/" +
        std::to_string(steps) + "  reward " + jobs::fixed(c.reward.back()) + "  distance " +
        jobs::fixed(c.distance.back(), 3) + "  KL to base " + jobs::fixed(c.kl_to_base));
    c.ms_per_step = totals.step > 0 ? 1000.0 * totals.seconds / static_cast<double>(totals.step) : 0.0;
    write_json_atomic(result_file, curve_json(c, variant_of.at(c.variant)->sweep));
  };
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < curves.size(); i = next++) {
      try {
        run_one(curves[i]);
      } catch (const std::exception& e) {
        curves[i].error = e.what();
        say("  " + curves[i].variant + " seed " + std::to_string(curves[i].seed) + " failed: " + e.what());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t j = 1; j < jobs_n; ++j) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (const int signo = stop_signal(); signo != 0) {
    int64_t finished = 0;
    for (const auto& c : curves) finished += c.error.empty() ? 1 : 0;
    throw Interrupted(std::string(signal_name(signo)) + ": stopped with " + std::to_string(finished) + " of " +
                          std::to_string(curves.size()) + " runs finished, the others checkpointed; continue with: "
                          "ramflow compare --resume " + run.path(),
                      signo);
  }

  // --- 4. aggregate -------------------------------------------------------------------------------------
  std::map<std::string, std::vector<const Curve*>> by_variant;
  for (const auto& c : curves)
    if (c.error.empty()) by_variant[c.variant].push_back(&c);
  auto peak = [](const Curve& c) { return *std::max_element(c.reward.begin(), c.reward.end()); };
  if (!fixed_target && !fraction_target) {  // the target method's peak, now that its runs are done
    std::vector<double> peaks;
    for (const Curve* c : by_variant[target_variant]) peaks.push_back(peak(*c));
    if (peaks.empty()) throw NumericalError("compare: every run of the target '" + target_variant + "' failed");
    target_reward = mean_std(peaks).mean;
    io.log << "target reward " << jobs::fixed(target_reward) << ": the peak of " << target_variant << "\n";
  }
  const double gap = target.reward_optimal - before.reward_mean;
  nlohmann::json report = {{"task", task->name()},
                           {"reward", reward->spec()},
                           {"multiplier", m},
                           {"steps", cfg.integer("steps")},
                           {"seeds", seeds},
                           {"sweep", cfg.raw("sweep")},
                           {"reward_base", before.reward_mean},
                           {"reward_optimal", target.reward_optimal},
                           {"kl_optimal", target.kl_optimal},
                           {"target_reward", target_reward},
                           {"target_source", fixed_target      ? std::string("--target-reward")
                                             : fraction_target ? "0.9 of the way from the base to reward_optimal"
                                                               : "peak of " + target_variant},
                           {"target_diversity", target_diversity},
                           {"methods", nlohmann::json::object()},
                           {"runs", nlohmann::json::array()}};
  std::vector<std::vector<std::string>> rows = {{"method", "final reward", "of optimal", "KL to base", "distance to p*",
                                                 "diversity", "steps to target", "seconds to target", "ms/step"}};
  std::vector<std::vector<std::string>> cost_rows = {{"method", "NFE/endpoint/step", "reward evals/step"}};
  std::vector<std::vector<std::string>> image_rows = {{"method", "accuracy", "Frechet distance", "diversity"}};
  // Per variant, the mean over seeds of the final reward and KL (for the frontier) and steps to target.
  std::map<std::string, std::pair<MeanStd, MeanStd>> final_point;
  std::map<std::string, std::pair<MeanStd, MeanStd>> to_target;
  for (const auto& var : variants) {
    const std::string& name = var.label;
    const auto& runs = by_variant[name];
    std::vector<double> final_r, frac, peak_r, dist, div, st, sec, ms, nfe, revals, kl, acc, fid;
    for (const Curve* c : runs) {
      final_r.push_back(c->reward.back());
      frac.push_back(gap != 0 ? (c->reward.back() - before.reward_mean) / gap : 0.0);
      peak_r.push_back(peak(*c));
      dist.push_back(c->distance.back());
      div.push_back(c->diversity.back());
      kl.push_back(c->kl_to_base);
      acc.push_back(c->accuracy);
      fid.push_back(c->frechet);
      const auto [s_to, sec_to] = time_to(*c, target_reward);
      st.push_back(s_to);
      sec.push_back(sec_to);
      ms.push_back(c->ms_per_step);
      const double n_steps = std::max(1.0, c->step.back());
      nfe.push_back(c->nfe.back() / n_steps);
      revals.push_back(c->reward_evals.back() / n_steps);
    }
    const MeanStd reached = mean_std(st);
    final_point[name] = {mean_std(kl), mean_std(final_r)};
    to_target[name] = {reached, mean_std(sec)};
    report["methods"][name] = {{"method", var.method},
                               {"sweep", var.sweep},
                               {"runs", runs.size()},
                               {"failed", seeds - static_cast<int64_t>(runs.size())},
                               {"reward_final", stat_json(mean_std(final_r))},
                               {"fraction_of_optimal", stat_json(mean_std(frac))},
                               {"reward_peak", stat_json(mean_std(peak_r))},
                               {"kl_to_base", stat_json(mean_std(kl))},
                               {"distance_final", stat_json(mean_std(dist))},
                               {"diversity_final", stat_json(mean_std(div))},
                               {"accuracy_final", stat_json(mean_std(acc))},
                               {"frechet_distance_final", stat_json(mean_std(fid))},
                               {"steps_to_target", stat_json(reached)},
                               {"seconds_to_target", stat_json(mean_std(sec))},
                               {"reached_target", reached.n},
                               {"ms_per_step", stat_json(mean_std(ms))},
                               {"nfe_per_step", stat_json(mean_std(nfe))},
                               {"reward_evals_per_step", stat_json(mean_std(revals))},
                               {"options", var.options},
                               {"preset", methods().get(var.method).preset}};
    const std::string reached_text =
        stat_text(reached, 0) + " (" + std::to_string(reached.n) + "/" + std::to_string(runs.size()) + ")";
    rows.push_back({name, stat_text(mean_std(final_r)), stat_text(mean_std(frac), 2), stat_text(mean_std(kl), 2),
                    stat_text(mean_std(dist)), stat_text(mean_std(div), 2), reached_text, stat_text(mean_std(sec), 2),
                    stat_text(mean_std(ms), 2)});
    cost_rows.push_back({name, jobs::fixed(mean_std(nfe).mean, 1), jobs::fixed(mean_std(revals).mean, 1)});
    if (mean_std(acc).n > 0) image_rows.push_back({name, stat_text(mean_std(acc)), stat_text(mean_std(fid)), stat_text(mean_std(div), 2)});
  }
  for (const auto& c : curves) report["runs"].push_back(curve_json(c, variant_of.at(c.variant)->sweep));

  // --- the exact reward-KL frontier: p_ref exp(m' r) over a grid of m' around m and the swept ones ------
  double m_hi = std::max(m, 1e-3);
  for (const auto& v : variants) m_hi = std::max(m_hi, v.cfg.number("multiplier"));
  std::vector<double> grid = {0.0};
  for (double f = 1.0 / 64.0; f <= 4.0 * m_hi + 1e-9; f *= std::sqrt(2.0)) grid.push_back(f);
  std::vector<double> front_kl, front_reward;
  report["frontier"] = nlohmann::json::array();
  for (const auto& p : target.frontier(grid)) {
    report["frontier"].push_back({{"multiplier", p.multiplier}, {"reward", p.reward}, {"kl", p.kl}, {"ess", p.ess}});
    if (p.ess < 50) continue;  // too few effective pool samples to trust the point
    front_kl.push_back(p.kl);
    front_reward.push_back(p.reward);
  }

  // --- plots ---------------------------------------------------------------------------------------------
  // Curves are means over seeds, with a band of ± one std where there are several seeds.
  std::vector<Series> vs_steps, vs_seconds, vs_base, dist_steps, frontier;
  for (size_t i = 0; i < variants.size(); ++i) {
    const auto& runs = by_variant[variants[i].label];
    if (runs.empty()) continue;
    const std::string style = series_style(i);
    const auto r = mean_of(runs, &Curve::reward);
    const auto [r_lo, r_hi] = band_of(runs, &Curve::reward);
    const auto [d_lo, d_hi] = band_of(runs, &Curve::distance);
    const auto& label = variants[i].label;
    vs_steps.push_back({label, mean_of(runs, &Curve::step), r, style, r_lo, r_hi});
    vs_seconds.push_back({label, mean_of(runs, &Curve::seconds), r, style, r_lo, r_hi});
    vs_base.push_back({label, mean_of(runs, &Curve::distance_base), r, style});
    dist_steps.push_back({label, mean_of(runs, &Curve::step), mean_of(runs, &Curve::distance), style, d_lo, d_hi});
  }
  // One curve per method through its variants' (KL, reward) means, sorted by KL. A negative KL cannot be:
  // the likelihood ODE failed on a velocity far from the base; such points are left out and listed.
  std::vector<std::string> kl_failed;
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<std::pair<double, double>> pts;
    for (const auto& v : variants) {
      if (v.method != names[i] || final_point[v.label].first.n == 0) continue;
      if (final_point[v.label].first.mean < 0) {
        kl_failed.push_back(v.label);
        continue;
      }
      pts.emplace_back(final_point[v.label].first.mean, final_point[v.label].second.mean);
    }
    if (pts.empty()) continue;
    std::sort(pts.begin(), pts.end());
    Series sr{names[i], {}, {}, series_style(i, /*marker=*/true)};
    for (const auto& [x, y] : pts) {
      sr.x.push_back(x);
      sr.y.push_back(y);
    }
    frontier.push_back(sr);
  }
  frontier.push_back({"exact tilt p_{ref} e^{m r}", front_kl, front_reward, "k3"});  // the frontier itself
  const std::vector<HLine> levels = {{target.reward_optimal, "exact target (optimal)", kOptimumStyle},
                                     {target_reward, "target reward", kTargetStyle},
                                     {before.reward_mean, "base model", kBaseStyle}};
  const std::string spread = seeds > 1 ? " (mean and ± std over seeds)" : "";
  line_plot(run.plot("reward_vs_steps"), "evaluation reward" + spread, "training step", "mean reward", vs_steps,
            levels);
  line_plot(run.plot("reward_vs_seconds"), "evaluation reward" + spread, "training seconds", "mean reward",
            vs_seconds, levels);
  line_plot(run.plot("reward_vs_distance_from_base"), "reward against energy distance from the base model",
            "energy distance from the base samples", "mean reward", vs_base, levels);
  line_plot(run.plot("distance_vs_steps"), "energy distance to the exact target" + spread, "training step",
            "energy distance to p*", dist_steps, {{0.0, "exact target", kOptimumStyle}});
  line_plot(run.plot("frontier"), "final reward against KL(p_{\\theta} || p_{ref}) (mean over seeds)",
            "KL to the base model (nats)", "final mean reward", frontier,
            {{before.reward_mean, "base model", kBaseStyle}});

  // --- report.md, report.json, summary.json ---------------------------------------------------------------
  std::ostringstream md;
  md << "# ramflow compare: " << task->name() << ", reward " << reward->spec().dump() << ", m = " << m << "\n\n"
     << cfg.integer("steps") << " steps per run, " << seeds << " seeds per configuration, mean ± std over seeds. "
     << "Evaluation: " << n_eval << " samples on fixed noise; the exact target p* ∝ p_base exp(m r) from "
     << target.pool.size(0) << " base samples (effective sample size " << jobs::fixed(target.ess, 0) << ").\n\n"
     << "- base reward " << jobs::fixed(before.reward_mean) << ", reward_optimal " << jobs::fixed(target.reward_optimal)
     << " (KL(p* || p_ref) = " << jobs::fixed(target.kl_optimal) << "), target reward " << jobs::fixed(target_reward)
     << " (" << report["target_source"].get<std::string>() << ")\n"
     << "- of optimal = (reward - base) / (reward_optimal - base); above 1 means the method went past the "
        "KL-optimal tilt at m = " << m << "\n"
     << "- KL to base = KL(p_theta || p_ref) at the end, by ODE likelihoods on " << cfg.integer("eval_kl_samples")
     << " samples; m means a KL temperature only for ram, ram-anneal, ram-tilt, adjoint-matching and eam: the other "
        "methods have their own regularisers, so compare them on the frontier (plots/frontier.png)\n"
     << "- diversity = mean pairwise distance of the samples (exact target: " << jobs::fixed(target_diversity) << ")\n\n";
  auto md_table = [&](const std::vector<std::vector<std::string>>& t) {
    for (size_t r = 0; r < t.size(); ++r) {
      md << "|";
      for (const auto& cell : t[r]) md << " " << cell << " |";
      md << "\n";
      if (r == 0) {
        md << "|";
        for (size_t k = 0; k < t[r].size(); ++k) md << "---|";
        md << "\n";
      }
    }
  };
  md_table(rows);
  md << "\nCost per step (network evaluations per endpoint, rollout plus training; reward evaluations):\n\n";
  md_table(cost_rows);
  if (image_rows.size() > 1) {
    md << "\nImages, graded by the evaluation classifier (not the reward's judge) at the final evaluation: accuracy "
          "of the requested class, Fréchet distance to the test split in its feature space, within-class diversity "
          "of its features:\n\n";
    md_table(image_rows);
  }
  // Steps to the target, each configuration against the target configuration.
  if (!fixed_target && !fraction_target && to_target.count(target_variant) && to_target[target_variant].first.n > 0) {
    const MeanStd& ts = to_target[target_variant].first;
    md << "\n## Steps to " << target_variant << "'s peak reward (" << jobs::fixed(target_reward) << ")\n\n"
       << target_variant << " reaches its own peak at step " << stat_text(ts, 0) << " on average ("
       << jobs::fixed(to_target[target_variant].second.mean, 2) << " s). The paper reports RAM reaching Flow-GRPO's "
          "peak in up to 50x fewer steps.\n\n";
    for (const auto& v : variants) {
      if (v.label == target_variant) continue;
      const MeanStd& st = to_target[v.label].first;
      const size_t runs = by_variant[v.label].size();
      md << "- " << v.label << ": ";
      if (st.n == 0) {
        md << "never reaches it in " << v.cfg.integer("steps") << " steps\n";
        continue;
      }
      md << "step " << stat_text(st, 0) << " (" << st.n << "/" << runs << " seeds), "
         << jobs::fixed(to_target[v.label].second.mean, 2) << " s: " << jobs::fixed(ts.mean / st.mean, 1)
         << "x fewer steps" << (st.mean > 0 && ts.mean / st.mean >= 50 ? " (the paper's 50x holds here)" : "")
         << (st.n < static_cast<int64_t>(runs) ? "; the other seeds never reach it" : "") << "\n";
    }
  }
  if (!kl_failed.empty()) {
    md << "\nLeft out of plots/frontier.png: a negative KL estimate (the likelihood ODE failed on a velocity far "
          "from the base) for";
    for (const auto& label : kl_failed) md << " " << label << (&label == &kl_failed.back() ? "." : ",");
    md << "\n";
  }
  md << "\nPlots: plots/reward_vs_steps.png, plots/reward_vs_seconds.png, plots/reward_vs_distance_from_base.png, "
        "plots/distance_vs_steps.png, plots/frontier.png\n";
  write_file_atomic(run.file("report.md"), md.str());
  write_file_atomic(run.file("report.json"), report.dump(2) + "\n");
  nlohmann::json summary = {
      {"task", task->name()},
      {"methods", names},
      {"configurations", variants.size()},
      {"seeds", seeds},
      {"steps", cfg.integer("steps")},
      {"reward_base", before.reward_mean},
      {"reward_optimal", target.reward_optimal},
      {"kl_optimal", target.kl_optimal},
      {"target_reward", target_reward},
      {"failed_runs", std::count_if(curves.begin(), curves.end(), [](const Curve& c) { return !c.error.empty(); })},
      {"total_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count()},
      {"report", "report.md"}};
  run.write_summary(summary);
  io.log << "\n" << jobs::table(rows);
  if (image_rows.size() > 1) io.log << "\n" << jobs::table(image_rows);
  io.log << "run directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
