// One training run of a job (see src/jobs/training_run.h).
#include "jobs/training_run.h"

#include <torch/torch.h>

#include "jobs/report.h"
#include "jobs/resolve.h"
#include "ramflow/method.h"
#include "ramflow/metrics.h"
#include "ramflow/stop.h"

namespace ramflow::jobs {
namespace {

double num_of(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

}  // namespace

void EvalCurve::add(const nlohmann::json& e) {
  step.push_back(num_of(e, "eval_step"));
  seconds.push_back(num_of(e, "seconds"));
  nfe_total.push_back(num_of(e, "nfe_total"));
  reward_evals.push_back(num_of(e, "reward_evals"));
  reward.push_back(num_of(e, "reward"));
  distance.push_back(num_of(e, "distance"));
  distance_base.push_back(num_of(e, "distance_from_base"));
  diversity.push_back(num_of(e, "diversity"));
  // The judge's rate under the name eval_line gives it; lines written before that name was
  // recorded carry one of the two rates.
  if (e.contains("judge") && e["judge"].is_string())
    rate_name = e["judge"].get<std::string>();
  else
    for (const char* rate : {"accuracy", "exact_match"})
      if (e.contains(rate)) rate_name = rate;
  judge_rate.push_back(num_of(e, rate_name.c_str()));
  frechet.push_back(num_of(e, "frechet_distance"));
  // A term missing from a line (none is, the reward's terms are fixed) would be NaN there; the
  // vectors stay aligned with `step`.
  if (e.contains("reward_terms"))
    for (const auto& [term, value] : e["reward_terms"].items()) {
      auto& v = reward_terms[term];
      v.resize(step.size() - 1, std::nan(""));
      v.push_back(value.is_number() ? value.get<double>() : std::nan(""));
    }
  if (e.value("final", false)) {
    kl_to_base = num_of(e, "kl_to_base");
    kl_to_base_se = num_of(e, "kl_to_base_se");
  }
}

CurveEvaluator::CurveEvaluator(const Evaluator& evaluator, VelocityFieldImpl& base, int64_t samples,
                               const std::vector<int64_t>& extra)
    : evaluator_(evaluator) {
  // Each size as the evaluator takes it: it caps a request at its evaluation set (eval_samples).
  samples_ = evaluator.evaluated_size(samples);
  std::vector<int64_t> sizes;
  for (int64_t n : extra) sizes.push_back(evaluator.evaluated_size(n));
  sizes.push_back(samples_);
  for (int64_t n : sizes) {
    if (base_.count(n)) continue;
    EvalResult e = evaluator.evaluate(base, n);
    e.kl_to_base = e.kl_to_base_se = 0.0;  // the base itself
    const auto x = e.samples.reshape({e.n, -1});
    base_self_[n] = mean_cross_distance(x, x);
    base_.emplace(n, std::move(e));
  }
}

nlohmann::json CurveEvaluator::line(int64_t step, const StepRecord& totals,
                                    VelocityFieldImpl& model, bool final) const {
  return line(step, totals, evaluator_.evaluate(model, samples_, final), final);
}

nlohmann::json CurveEvaluator::line(int64_t step, const StepRecord& totals, const EvalResult& e,
                                    bool final) const {
  const auto x = e.samples.reshape({e.n, -1});
  const auto& b = base_.at(e.n);
  // Energy distance from the base model's samples on the same noise, as a V-statistic (diagonal
  // pairs included): 2 E|X - B| - E|X - X'| - E|B - B'|, every term by the same cross-distance sum,
  // so that it is exactly 0 when the samples are the base's whatever the kernels' summation order.
  const auto bx = b.samples.reshape({b.n, -1});
  const double from_base = std::max(
      0.0, 2.0 * mean_cross_distance(x, bx) - mean_cross_distance(x, x) - base_self_.at(e.n));
  return eval_line(step, totals, e, from_base, final);
}

TrainingRun::TrainingRun(const Config& cfg, const std::string& method, const TaskPtr& task,
                         const RewardPtr& reward, const VelocityFieldPtr& base, RunDir& run,
                         std::string resume_hint, CommunicatorPtr comm)
    : cfg_(cfg),
      run_(run),
      series_(run.file("checkpoints"), cfg.integer("keep_checkpoints"), run.writes()),
      resume_hint_(std::move(resume_hint)) {
  auto [policy, ref] = policy_from(cfg, base);
  trainer_ = std::make_unique<Trainer>(policy, ref, reward, methods().get(method).make(cfg),
                                       trainer_options_from(cfg, *task), condition_source(task),
                                       std::move(comm));
  meta_ = {{"config", cfg.values()},
           {"method", trainer_->method().name()},
           {"method_options", trainer_->method().options()}};
  if (cfg.is_set("decoder"))  // the decoder between samples and rewards (decoder.h)
    meta_["decoder"] =
        decoder_record(cfg.raw("decoder"), static_cast<uint64_t>(cfg.integer("decoder_seed")));
}

std::optional<std::vector<nlohmann::json>> TrainingRun::resume(const SafetensorsFile* file,
                                                               const std::string& path) {
  std::optional<SafetensorsFile> read;
  std::string from = path;
  if (!file) {
    from = series_.latest();
    if (from.empty()) return std::nullopt;
    read.emplace(load_safetensors(from));
    file = &*read;
  }
  Resumed resumed = jobs::resume(*trainer_, *file, from, run_);
  evaluated_at_start_ = resumed.evaluated_at_step;
  return std::move(resumed.records);
}

void TrainingRun::start() {
  run_.rewind_metrics(-1);
  evaluated_at_start_ = true;
}

DriveResult TrainingRun::train(const Hooks& hooks, double budget_seconds) {
  DriveHooks drive_hooks;
  drive_hooks.on_step = [&](const StepRecord& rec) {
    run_.append_metrics(step_line(rec));
    if (hooks.on_step) hooks.on_step(rec);
  };
  drive_hooks.on_eval = hooks.on_eval;
  drive_hooks.warn = hooks.warn;
  DriveOptions options;
  options.steps = cfg_.integer("steps");
  options.eval_every = cfg_.text("eval") == "none" ? 0 : cfg_.integer("eval_every");
  options.budget_seconds = budget_seconds;
  options.checkpoint_every = cfg_.integer("checkpoint_every");
  options.max_bad_steps = cfg_.integer("max_bad_steps");
  options.resume_hint = resume_hint_;
  options.evaluated_at_start = evaluated_at_start_;
  options.meta = meta_;
  options.write_checkpoints = run_.writes();
  return drive(*trainer_, series_, options, drive_hooks);
}

std::string TrainingRun::stopped_message(const DriveResult& driven) const {
  return std::string(signal_name(driven.signal)) + ": stopped after step " +
         std::to_string(trainer_->steps_done()) + " of " + std::to_string(cfg_.integer("steps")) +
         "; checkpoint " + driven.checkpoint + "; continue with: " + resume_hint_;
}

}  // namespace ramflow::jobs
