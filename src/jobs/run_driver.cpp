// The training-run driver of the jobs (see src/jobs/run_driver.h).
#include "jobs/run_driver.h"

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/http_client.h"
#include "ramflow/stop.h"

namespace ramflow::jobs {
namespace {
// The stop signal one of the ranks received (the largest number, if several), on every rank.
int agreed_signal(Communicator& comm) {
  const int own = stop_signal();
  if (comm.size() == 1) return own;
  auto t = torch::full({1}, static_cast<int64_t>(own), torch::kLong);
  comm.all_reduce_max(t);
  return static_cast<int>(t.item<int64_t>());
}
}  // namespace

Resumed resume(Trainer& trainer, const SafetensorsFile& file, const std::string& path,
               RunDir& run) {
  load_training_checkpoint(file, path, trainer);
  const int64_t at = trainer.steps_done();
  Resumed out;
  out.records =
      run.rewind_metrics(at, [](const nlohmann::json& line) { return line.value("final", false); });
  for (const auto& line : out.records)
    if (line.contains("eval_step") && line["eval_step"] == at) out.evaluated_at_step = true;
  return out;
}

DriveResult drive(Trainer& trainer, CheckpointSeries& series, const DriveOptions& options,
                  const DriveHooks& hooks) {
  DriveResult result;
  result.last = trainer.totals();
  int64_t saved = -1;  // the step of the last checkpoint written here
  auto checkpoint = [&] {
    const int64_t step = trainer.steps_done();
    result.checkpoint = options.write_checkpoints
                            ? series.write(step,
                                           [&](const std::string& path) {
                                             save_training_checkpoint(path, trainer, options.meta);
                                           })
                            : series.path(step);
    saved = step;
  };
  auto over_budget = [&] {
    return options.budget_seconds > 0 && result.last.seconds >= options.budget_seconds;
  };
  if (const int64_t at = trainer.steps_done(); !options.evaluated_at_start && at > 0 &&
                                               at < options.steps && options.eval_every > 0 &&
                                               at % options.eval_every == 0 && hooks.on_eval)
    hooks.on_eval(at);
  int64_t bad = 0;  // skipped steps in a row
  const std::string then =
      options.resume_hint.empty() ? "" : "; continue with: " + options.resume_hint;
  while (trainer.steps_done() < options.steps && !over_budget()) {
    // A signal to any rank stops every rank after the same step.
    if ((result.signal = agreed_signal(trainer.communicator())) != 0) break;
    try {
      result.last = trainer.step();
    } catch (const RemoteError& e) {
      // The reward server is gone for longer than the retries wait: keep what was trained so far.
      if (saved != trainer.steps_done()) checkpoint();
      throw RemoteError(std::string(e.what()) + "; checkpoint " + result.checkpoint + then);
    }
    const int64_t s = result.last.step;
    if (!result.last.skipped.empty()) {
      ++bad;
      if (hooks.warn)
        hooks.warn(result.last.skipped + " (step skipped; " + std::to_string(bad) +
                   " in a row, the run stops at " + std::to_string(options.max_bad_steps) + ")");
      if (bad >= options.max_bad_steps) {
        if (hooks.on_step) hooks.on_step(result.last);
        checkpoint();
        throw NumericalError(
            std::to_string(bad) + " steps in a row skipped, the last " + result.last.skipped +
            "; stopped with checkpoint " + result.checkpoint +
            ". A model that diverged needs a new run with a lower --lr or --grad-clip" +
            (then.empty() ? "" : "; after a reward fault" + then));
      }
    } else {
      bad = 0;
    }
    if (hooks.on_step) hooks.on_step(result.last);
    const bool last = s == options.steps || over_budget();
    if (options.eval_every > 0 && s % options.eval_every == 0 && !last && hooks.on_eval)
      hooks.on_eval(s);
    if (options.checkpoint_every > 0 && s % options.checkpoint_every == 0) checkpoint();
  }
  if (result.signal == 0) result.signal = stop_signal();
  result.end = trainer.steps_done() >= options.steps ? DriveEnd::kSteps
               : over_budget()                       ? DriveEnd::kBudget
                                                     : DriveEnd::kStopped;
  if (result.end != DriveEnd::kStopped) result.signal = 0;
  if (saved != trainer.steps_done())
    checkpoint();
  else
    result.checkpoint = series.path(saved);
  return result;
}

}  // namespace ramflow::jobs
