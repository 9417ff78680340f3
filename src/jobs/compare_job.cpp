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
#include <cmath>
#include <mutex>
#include <sstream>
#include <thread>

#include <torch/torch.h>

#include "jobs/setup.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/method.h"
#include "ramflow/metrics.h"
#include "ramflow/run_dir.h"
#include "ramflow/trainer.h"

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
  jobs::add_training_params(t, /*with_method=*/false);
  jobs::add_eval_params(t);
  t.integer("eval_every", 50, "evaluate every N steps for the curves", 1, 100000000);
  t.integer("eval_curve_samples", 1000, "endpoints per evaluation", 2, 1 << 22);
  return t;
}

namespace {

// One run's evaluation curve (index 0 is the base model, before training).
struct Curve {
  std::string method;
  int64_t seed = 0;
  std::vector<double> step, seconds, nfe, reward_evals, reward, distance, distance_base, diversity;
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

struct Stat {
  double mean = std::nan(""), std = std::nan("");
  int64_t n = 0;
};
Stat stat(const std::vector<double>& v) {
  Stat s;
  std::vector<double> ok;
  for (double x : v)
    if (std::isfinite(x)) ok.push_back(x);
  s.n = static_cast<int64_t>(ok.size());
  if (ok.empty()) return s;
  s.mean = 0;
  for (double x : ok) s.mean += x / static_cast<double>(ok.size());
  double ss = 0;
  for (double x : ok) ss += (x - s.mean) * (x - s.mean);
  s.std = ok.size() > 1 ? std::sqrt(ss / static_cast<double>(ok.size() - 1)) : 0.0;
  return s;
}
nlohmann::json stat_json(const Stat& s) {
  auto num = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
  return {{"mean", num(s.mean)}, {"std", num(s.std)}, {"n", s.n}};
}
std::string stat_text(const Stat& s, int digits = 3) {
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

}  // namespace

nlohmann::json run_compare(const Config& cfg_in, JobIO io) {
  const auto wall_start = std::chrono::steady_clock::now();
  // --- 1. resolve and validate ----------------------------------------------------------------------
  Config cfg = cfg_in;
  const jobs::RunBasics basics = jobs::resolve_basics(cfg);
  const torch::Device& device = basics.device;
  const TaskPtr& task = basics.task;
  const RewardPtr& reward = basics.reward;
  const double m = basics.multiplier;
  const auto names = split_list(cfg.text("methods"));
  if (names.empty()) throw ConfigError("--methods: no method given");
  std::map<std::string, Config> method_cfg;  // each method's config: the shared keys plus its preset
  std::map<std::string, nlohmann::json> method_options;
  for (const auto& name : names) {
    if (!methods().contains(name))
      throw ConfigError("--methods: unknown method '" + name + "' (choose from " + methods().joined_names() + ")");
    if (method_cfg.count(name)) throw ConfigError("--methods: '" + name + "' is listed twice");
    Config c = cfg;
    c.apply_defaults(methods().get(name).preset);
    auto probe = methods().get(name).make(c);  // validates the method's keys
    check_reward_for(*probe, *reward);
    method_options[name] = probe->options();
    method_cfg.emplace(name, std::move(c));
  }
  const bool fixed_target = cfg.is_set("target_reward");
  const std::string target_method = cfg.text("target_method");
  if (!fixed_target && !method_cfg.count(target_method))
    throw ConfigError("--target-method: '" + target_method +
                      "' is not among --methods; add it or give --target-reward");
  make_velocity_field(jobs::model_spec_from(cfg, *task));
  RunDir run = RunDir::create(cfg.text("out"), cfg.boolean("overwrite"));
  run.write_config(cfg.values());

  // --- 2. shared base model and evaluation -----------------------------------------------------------
  VelocityFieldPtr base = jobs::base_model(cfg, *task, device, io);
  Evaluator evaluator(task, reward, m, *base, jobs::eval_options_from(cfg));
  const ExactTarget& target = evaluator.target();
  const int64_t n_eval = cfg.integer("eval_curve_samples");
  const EvalResult before = evaluator.evaluate(*base, n_eval);
  const torch::Tensor base_samples = before.samples.reshape({before.n, -1});
  const double target_diversity = [&] {
    Rng rng(static_cast<uint64_t>(cfg.integer("eval_seed")) + 11);
    return mean_pair_distance(evaluator.target_samples(n_eval, rng).reshape({n_eval, -1}));
  }();
  io.log << "exact target: reward_optimal " << jobs::fixed(target.reward_optimal) << ", base "
         << jobs::fixed(before.reward_mean) << ", effective sample size " << jobs::fixed(target.ess, 0) << "\n";

  // --- 3. the runs -------------------------------------------------------------------------------------
  const int64_t seeds = cfg.integer("seeds"), steps = cfg.integer("steps"), every = cfg.integer("eval_every");
  const double budget = cfg.number("budget_seconds");
  std::vector<Curve> curves;
  for (const auto& name : names)
    for (int64_t s = 0; s < seeds; ++s) {
      Curve c;
      c.method = name;
      c.seed = cfg.integer("seed") + s;
      curves.push_back(c);
    }
  int64_t jobs_n = cfg.integer("jobs");
  if (jobs_n == 0) jobs_n = std::max<int64_t>(1, std::thread::hardware_concurrency());
  jobs_n = std::min<int64_t>(jobs_n, static_cast<int64_t>(curves.size()));
  if (device.is_cpu()) torch::set_num_threads(1);  // parallel runs, one thread each
  std::mutex log_mutex;
  auto say = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mutex);
    io.log << line << "\n" << std::flush;
  };
  say("compare: " + std::to_string(names.size()) + " methods x " + std::to_string(seeds) + " seeds, " +
      std::to_string(steps) + " steps each, " + std::to_string(jobs_n) + " at a time");

  auto evaluate_into = [&](Curve& c, double step, const StepRecord& rec, VelocityFieldImpl& model) {
    const EvalResult e = evaluator.evaluate(model, n_eval);
    const auto x = e.samples.reshape({e.n, -1});
    c.step.push_back(step);
    c.seconds.push_back(rec.seconds);
    c.nfe.push_back(static_cast<double>(rec.nfe) + rec.nfe_train);  // rollout + training, per endpoint
    c.reward_evals.push_back(static_cast<double>(rec.reward_evals));
    c.reward.push_back(e.reward_mean);
    c.distance.push_back(e.distance);
    // Energy distance from the base model's samples on the same noise, as a V-statistic (diagonal
    // pairs included), so that it is >= 0 and exactly 0 for the base model itself.
    const double v = 1.0 - 1.0 / static_cast<double>(x.size(0));
    c.distance_base.push_back(
        std::max(0.0, 2.0 * mean_cross_distance(x, base_samples) - v * e.diversity - v * before.diversity));
    c.diversity.push_back(e.diversity);
  };
  auto run_one = [&](Curve& c) {
    Config mc = method_cfg.at(c.method);
    mc.set("seed", c.seed);
    auto policy = clone_velocity_field(*base);
    for (auto& p : policy->parameters()) p.set_requires_grad(true);
    Trainer trainer(policy, frozen_copy(*base), reward, methods().get(c.method).make(mc),
                    jobs::trainer_options_from(mc, *task));
    StepRecord rec;
    evaluate_into(c, 0, rec, *base);
    int64_t s = 0;
    while (s < steps && !(budget > 0 && rec.seconds >= budget)) {
      rec = trainer.step();
      ++s;
      if (s % every == 0 || s == steps) {
        evaluate_into(c, static_cast<double>(s), rec, trainer.policy());
        say("  " + c.method + " seed " + std::to_string(c.seed) + "  step " + std::to_string(s) + "/" +
            std::to_string(steps) + "  reward " + jobs::fixed(c.reward.back()) + "  distance " +
            jobs::fixed(c.distance.back(), 3));
      }
    }
    if (c.step.back() != static_cast<double>(s)) evaluate_into(c, static_cast<double>(s), rec, trainer.policy());
    c.ms_per_step = s > 0 ? 1000.0 * rec.seconds / static_cast<double>(s) : 0.0;
  };
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < curves.size(); i = next++) {
      try {
        run_one(curves[i]);
      } catch (const std::exception& e) {
        curves[i].error = e.what();
        say("  " + curves[i].method + " seed " + std::to_string(curves[i].seed) + " failed: " + e.what());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t j = 1; j < jobs_n; ++j) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();

  // --- 4. aggregate -------------------------------------------------------------------------------------
  std::map<std::string, std::vector<const Curve*>> by_method;
  for (const auto& c : curves)
    if (c.error.empty()) by_method[c.method].push_back(&c);
  auto peak = [](const Curve& c) { return *std::max_element(c.reward.begin(), c.reward.end()); };
  double target_reward;
  if (fixed_target) {
    target_reward = cfg.number("target_reward");
  } else {
    std::vector<double> peaks;
    for (const Curve* c : by_method[target_method]) peaks.push_back(peak(*c));
    if (peaks.empty()) throw NumericalError("compare: every run of the target method '" + target_method + "' failed");
    target_reward = stat(peaks).mean;
  }
  const double gap = target.reward_optimal - before.reward_mean;
  nlohmann::json report = {{"task", task->name()},
                           {"reward", reward->spec()},
                           {"multiplier", m},
                           {"steps", steps},
                           {"seeds", seeds},
                           {"reward_base", before.reward_mean},
                           {"reward_optimal", target.reward_optimal},
                           {"target_reward", target_reward},
                           {"target_source", fixed_target ? "--target-reward" : "peak of " + target_method},
                           {"target_diversity", target_diversity},
                           {"methods", nlohmann::json::object()},
                           {"runs", nlohmann::json::array()}};
  std::vector<std::vector<std::string>> rows = {
      {"method", "final reward", "fraction of optimal", "peak reward", "distance to p*", "diversity",
       "steps to target", "seconds to target", "ms/step", "NFE/endpoint/step", "reward evals/step"}};
  for (const auto& name : names) {
    const auto& runs = by_method[name];
    std::vector<double> final_r, frac, peak_r, dist, div, st, sec, ms, nfe, revals;
    for (const Curve* c : runs) {
      final_r.push_back(c->reward.back());
      frac.push_back(gap != 0 ? (c->reward.back() - before.reward_mean) / gap : 0.0);
      peak_r.push_back(peak(*c));
      dist.push_back(c->distance.back());
      div.push_back(c->diversity.back());
      const auto [s_to, sec_to] = time_to(*c, target_reward);
      st.push_back(s_to);
      sec.push_back(sec_to);
      ms.push_back(c->ms_per_step);
      const double n_steps = std::max(1.0, c->step.back());
      nfe.push_back(c->nfe.back() / n_steps);
      revals.push_back(c->reward_evals.back() / n_steps);
    }
    const Stat reached = stat(st);
    report["methods"][name] = {{"runs", runs.size()},
                               {"failed", seeds - static_cast<int64_t>(runs.size())},
                               {"reward_final", stat_json(stat(final_r))},
                               {"fraction_of_optimal", stat_json(stat(frac))},
                               {"reward_peak", stat_json(stat(peak_r))},
                               {"distance_final", stat_json(stat(dist))},
                               {"diversity_final", stat_json(stat(div))},
                               {"steps_to_target", stat_json(reached)},
                               {"seconds_to_target", stat_json(stat(sec))},
                               {"reached_target", reached.n},
                               {"ms_per_step", stat_json(stat(ms))},
                               {"nfe_per_step", stat_json(stat(nfe))},
                               {"reward_evals_per_step", stat_json(stat(revals))},
                               {"options", method_options.at(name)},
                               {"preset", methods().get(name).preset}};
    const std::string reached_text =
        stat_text(reached, 0) + " (" + std::to_string(reached.n) + "/" + std::to_string(runs.size()) + ")";
    rows.push_back({name, stat_text(stat(final_r)), stat_text(stat(frac)), stat_text(stat(peak_r)),
                    stat_text(stat(dist)), stat_text(stat(div)), reached_text, stat_text(stat(sec), 2),
                    stat_text(stat(ms), 2), jobs::fixed(stat(nfe).mean, 1), jobs::fixed(stat(revals).mean, 1)});
  }
  for (const auto& c : curves)
    report["runs"].push_back({{"method", c.method}, {"seed", c.seed}, {"error", c.error},
                              {"step", c.step}, {"seconds", c.seconds}, {"nfe", c.nfe},
                              {"reward_evals", c.reward_evals}, {"reward", c.reward},
                              {"distance", c.distance}, {"distance_from_base", c.distance_base},
                              {"diversity", c.diversity}, {"ms_per_step", c.ms_per_step}});

  // --- plots ---------------------------------------------------------------------------------------------
  const char* colors[] = {"b", "r", "g", "m", "c", "k", "h", "q"};
  std::vector<Series> vs_steps, vs_seconds, vs_base, dist_steps;
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& runs = by_method[names[i]];
    if (runs.empty()) continue;
    const std::string style = std::string(colors[i % 8]) + "2";
    const auto r = mean_of(runs, &Curve::reward);
    vs_steps.push_back({names[i], mean_of(runs, &Curve::step), r, style});
    vs_seconds.push_back({names[i], mean_of(runs, &Curve::seconds), r, style});
    vs_base.push_back({names[i], mean_of(runs, &Curve::distance_base), r, style});
    dist_steps.push_back({names[i], mean_of(runs, &Curve::step), mean_of(runs, &Curve::distance), style});
  }
  const std::vector<HLine> levels = {{target.reward_optimal, "exact target (optimal)", "r|"},
                                     {target_reward, "target reward", "k;"},
                                     {before.reward_mean, "base model", "k|"}};
  line_plot(run.plot("reward_vs_steps"), "evaluation reward (mean over seeds)", "training step", vs_steps, levels);
  line_plot(run.plot("reward_vs_seconds"), "evaluation reward (mean over seeds)", "training seconds", vs_seconds,
            levels);
  line_plot(run.plot("reward_vs_distance_from_base"), "reward against energy distance from the base model",
            "energy distance from the base samples", vs_base, levels);
  line_plot(run.plot("distance_vs_steps"), "energy distance to the exact target (mean over seeds)",
            "training step", dist_steps, {{0.0, "exact target", "r|"}});

  // --- report.md, report.json, summary.json ---------------------------------------------------------------
  std::ostringstream md;
  md << "# ramflow compare: " << task->name() << ", reward " << reward->spec().dump() << ", m = " << m << "\n\n"
     << steps << " steps per run, " << seeds << " seeds per method, mean ± std over seeds. Evaluation: "
     << n_eval << " samples on fixed noise; the exact target p* ∝ p_base exp(m r) from " << target.pool.size(0)
     << " base samples (effective sample size " << jobs::fixed(target.ess, 0) << ").\n\n"
     << "- base reward " << jobs::fixed(before.reward_mean) << ", reward_optimal " << jobs::fixed(target.reward_optimal)
     << ", target reward " << jobs::fixed(target_reward) << " (" << report["target_source"].get<std::string>() << ")\n"
     << "- NFE/endpoint/step = network evaluations per endpoint per step, rollout plus training (forward passes "
        "of any model, vector-Jacobian products)\n"
     << "- diversity = mean pairwise distance of the samples (exact target: " << jobs::fixed(target_diversity) << ")\n"
     << "- fraction of optimal = (reward - base) / (reward_optimal - base); above 1 means the method went past "
        "the KL-optimal tilt\n\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    md << "|";
    for (const auto& cell : rows[r]) md << " " << cell << " |";
    md << "\n";
    if (r == 0) {
      md << "|";
      for (size_t k = 0; k < rows[r].size(); ++k) md << "---|";
      md << "\n";
    }
  }
  md << "\nPlots: plots/reward_vs_steps.png, plots/reward_vs_seconds.png, plots/reward_vs_distance_from_base.png, "
        "plots/distance_vs_steps.png\n";
  write_file_atomic(run.file("report.md"), md.str());
  write_file_atomic(run.file("report.json"), report.dump(2) + "\n");
  nlohmann::json summary = {
      {"task", task->name()},
      {"methods", names},
      {"seeds", seeds},
      {"steps", steps},
      {"reward_base", before.reward_mean},
      {"reward_optimal", target.reward_optimal},
      {"target_reward", target_reward},
      {"failed_runs", std::count_if(curves.begin(), curves.end(), [](const Curve& c) { return !c.error.empty(); })},
      {"total_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count()},
      {"report", "report.md"}};
  run.write_summary(summary);
  io.log << "\n" << jobs::table(rows) << "run directory: " << run.path() << "\n";
  return summary;
}

}  // namespace ramflow
