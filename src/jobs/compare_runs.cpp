// The runs of `ramflow compare`, `jobs` at a time (see src/jobs/compare.h).
#include <atomic>
#include <cctype>
#include <filesystem>
#include <mutex>
#include <thread>

#include <torch/torch.h>

#include "jobs/compare.h"
#include "jobs/report.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow::jobs {
namespace {

// A run's directory name: its label and seed with every other character than [A-Za-z0-9.-] as '_'.
std::string run_slug(const std::string& variant, int64_t seed) {
  std::string s = variant + "-seed" + std::to_string(seed);
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-') ch = '_';
  return s;
}

double num_of(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

}  // namespace

nlohmann::json curve_json(const RunCurve& c, const nlohmann::json& sweep) {
  return {{"method", c.method},
          {"variant", c.variant},
          {"sweep", sweep},
          {"seed", c.seed},
          {"error", c.error},
          {"step", c.step},
          {"seconds", c.seconds},
          {"nfe_total", c.nfe_total},
          {"reward_evals", c.reward_evals},
          {"reward", c.reward},
          {"distance", c.distance},
          {"distance_from_base", c.distance_base},
          {"diversity", c.diversity},
          {"kl_to_base", json_number(c.kl_to_base)},
          {"kl_to_base_se", json_number(c.kl_to_base_se)},
          {"rate_name", c.rate_name},
          {"judge_rate", c.judge_rate},
          {"frechet_distance", c.frechet},
          {"reward_terms", c.reward_terms},
          {"ms_per_step", c.ms_per_step}};
}

RunCurve curve_from_json(const nlohmann::json& j) {
  RunCurve c;
  c.method = j.at("method").get<std::string>();
  c.variant = j.at("variant").get<std::string>();
  c.seed = j.at("seed").get<int64_t>();
  c.error = j.at("error").get<std::string>();
  auto numbers = [](const nlohmann::json& a) {
    std::vector<double> v;
    for (const auto& x : a) v.push_back(x.is_number() ? x.get<double>() : std::nan(""));
    return v;
  };
  auto list = [&](const char* key) { return numbers(j.at(key)); };
  c.step = list("step");
  c.seconds = list("seconds");
  c.nfe_total = list(j.contains("nfe_total") ? "nfe_total" : "nfe");  // "nfe" in earlier versions
  c.reward_evals = list("reward_evals");
  c.reward = list("reward");
  c.distance = list("distance");
  c.distance_base = list("distance_from_base");
  c.diversity = list("diversity");
  c.kl_to_base = num_of(j, "kl_to_base");
  c.kl_to_base_se = num_of(j, "kl_to_base_se");
  // Earlier versions kept the judge's final accuracy and Fréchet distance alone: the curves then
  // have them at their last point only.
  auto judged = [&](const char* key) {
    if (j.contains(key) && j[key].is_array()) return list(key);
    std::vector<double> v(c.step.size(), std::nan(""));
    if (!v.empty()) v.back() = num_of(j, key);
    return v;
  };
  c.rate_name = j.value("rate_name", std::string("accuracy"));
  c.judge_rate = judged(j.contains("judge_rate") ? "judge_rate" : "accuracy");
  c.frechet = judged("frechet_distance");
  if (j.contains("reward_terms"))
    for (const auto& [term, values] : j["reward_terms"].items())
      c.reward_terms[term] = numbers(values);
  c.ms_per_step = num_of(j, "ms_per_step");
  return c;
}

std::vector<RunCurve> run_all(const ComparePlan& plan, const Config& cfg, const TaskPtr& task,
                              const RewardPtr& reward, const VelocityFieldPtr& base,
                              const CurveEvaluator& curve, RunDir& run, bool resuming,
                              int64_t jobs_n, JobIO io) {
  const int64_t seeds = cfg.integer("seeds");
  std::vector<RunCurve> curves;
  for (const auto& v : plan.variants)
    for (int64_t s = 0; s < seeds; ++s) {
      RunCurve c;
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
  const std::string hint = "ramflow compare --resume " + run.path();
  // Each run in its own directory runs/<label>-seed<k>/: config.json, metrics.jsonl, checkpoints/,
  // and result.json (its curve) once it has finished.
  auto run_one = [&](RunCurve& c) {
    const Variant& variant = plan.variant(c.variant);
    Config mc = variant.cfg;
    mc.set("seed", c.seed);
    const int64_t steps = mc.integer("steps");
    const std::string who = "  " + c.variant + " seed " + std::to_string(c.seed);
    const std::string dir = run.file("runs/" + run_slug(c.variant, c.seed));
    const std::string result_file = dir + "/result.json";
    if (resuming && std::filesystem::exists(result_file)) {
      RunCurve done = curve_from_json(read_json_file(result_file));
      if (done.error.empty() && !done.step.empty() &&
          done.step.back() == static_cast<double>(steps)) {
        c = done;
        say(who + ": finished before, reused");
        return;
      }
    }
    std::filesystem::create_directories(dir);
    std::error_code ec;
    std::filesystem::remove(result_file, ec);
    write_json_atomic(dir + "/config.json", mc.values());
    RunDir rd = RunDir::open(dir);
    // The runs share the frozen base: LoRA's branches never write into it (lora_branch.h).
    TrainingRun training(mc, c.method, task, reward, base, rd, hint);
    Trainer& trainer = training.trainer();
    const auto resumed = resuming ? training.resume() : std::nullopt;
    if (resumed) {
      for (const auto& line : *resumed)
        if (line.contains("eval_step")) c.add(line);
      say(who + ": resumed at step " + std::to_string(trainer.steps_done()));
    } else {
      training.start();  // nothing of an earlier attempt
      const auto line = curve.line(0, StepRecord{}, curve.base(), false);
      rd.append_metrics(line);
      c.add(line);
    }
    auto evaluate = [&](int64_t s, bool final) {
      const auto line = curve.line(s, trainer.totals(), trainer.eval_model(), final);
      rd.append_metrics(line);
      c.add(line);
      say(who + "  step " + std::to_string(s) + "/" + std::to_string(steps) + "  reward " +
          fixed(c.reward.back()) +
          (curve.evaluator().has_target() ? "  distance " + fixed(c.distance.back(), 3)
                                          : std::string()) +
          (final ? "  KL to base " + KLEstimate{c.kl_to_base, c.kl_to_base_se}.text()
                 : std::string()));
    };
    TrainingRun::Hooks hooks;
    hooks.on_eval = [&](int64_t s) { evaluate(s, false); };
    hooks.warn = [&](const std::string& text) { say(who + ": warning: " + text); };
    const DriveResult driven = training.train(hooks, cfg.number("budget_seconds"));
    if (driven.end == DriveEnd::kStopped) {
      c.error = "stopped";
      return;
    }
    const StepRecord totals = trainer.totals();
    evaluate(totals.step, true);
    c.ms_per_step =
        totals.step > 0 ? 1000.0 * totals.seconds / static_cast<double>(totals.step) : 0.0;
    write_json_atomic(result_file, curve_json(c, variant.sweep));
  };
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < curves.size(); i = next++) {
      try {
        run_one(curves[i]);
      } catch (const std::exception& e) {
        curves[i].error = e.what();
        say("  " + curves[i].variant + " seed " + std::to_string(curves[i].seed) +
            " failed: " + e.what());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t j = 1; j < jobs_n; ++j) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  return curves;
}

}  // namespace ramflow::jobs
