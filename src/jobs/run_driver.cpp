// The training-run driver of the jobs (see src/jobs/run_driver.h).
#include "jobs/run_driver.h"

#include "ramflow/stop.h"

namespace ramflow::jobs {

DriveResult drive(Trainer& trainer, CheckpointSeries& series, const DriveOptions& options,
                  const DriveHooks& hooks) {
  DriveResult result;
  result.last = trainer.totals();
  int64_t saved = -1;  // the step of the last checkpoint written here
  auto checkpoint = [&] {
    const int64_t step = trainer.steps_done();
    result.checkpoint = series.write(step, [&](const std::string& path) {
      save_training_checkpoint(path, trainer, options.meta);
    });
    saved = step;
  };
  auto over_budget = [&] { return options.budget_seconds > 0 && result.last.seconds >= options.budget_seconds; };
  while (trainer.steps_done() < options.steps && !over_budget()) {
    if ((result.signal = stop_signal()) != 0) break;
    result.last = trainer.step();
    const int64_t s = result.last.step;
    if (hooks.on_step) hooks.on_step(result.last);
    const bool last = s == options.steps || over_budget();
    if (options.eval_every > 0 && s % options.eval_every == 0 && !last && hooks.on_eval) hooks.on_eval(s);
    if (options.checkpoint_every > 0 && s % options.checkpoint_every == 0) checkpoint();
  }
  if (result.signal == 0) result.signal = stop_signal();
  result.end = trainer.steps_done() >= options.steps ? DriveEnd::kSteps
               : over_budget()                        ? DriveEnd::kBudget
                                                      : DriveEnd::kStopped;
  if (result.end != DriveEnd::kStopped) result.signal = 0;
  if (saved != trainer.steps_done()) checkpoint();
  else result.checkpoint = series.path(saved);
  return result;
}

}  // namespace ramflow::jobs
