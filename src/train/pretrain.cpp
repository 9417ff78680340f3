// Flow-matching pretraining (see include/ramflow/pretrain.h).
#include "ramflow/pretrain.h"

#include <chrono>
#include <cmath>
#include <optional>

#include <torch/torch.h>

#include "ramflow/adamw.h"
#include "ramflow/conventions.h"
#include "ramflow/errors.h"
#include "ramflow/renoise.h"
#include "ramflow/task.h"

namespace ramflow {

torch::Tensor flow_matching_loss(VelocityFieldImpl& model, const torch::Tensor& x0,
                                 const Condition& cond, const TimeDistribution& time, Rng& rng) {
  const Renoised p = renoise(x0, cond, 1, time, rng);
  auto v = model.forward(p.x_t, p.t, p.cond);
  return torch::mse_loss(v, velocity_target(p.x0, p.eps));
}

void pretrain_flow_matching(VelocityFieldImpl& model, const DataSampler& data,
                            const PretrainOptions& options,
                            const std::function<void(const PretrainRecord&)>& on_step) {
  if (options.steps() < 1 || options.batch() < 1 || !(options.lr() > 0))
    throw ConfigError("pretrain: steps, batch and lr must be positive");
  if (!(options.label_dropout() >= 0 && options.label_dropout() <= 1))
    throw ConfigError("pretrain: label dropout must be in [0, 1]");
  if (!(options.ema() >= 0 && options.ema() < 1))
    throw ConfigError("pretrain: ema must be in [0, 1)");
  options.time().validate();
  auto params = model.parameters();
  TORCH_CHECK(!params.empty(), "pretrain: the model has no parameters");
  const auto opts = params.front().options().requires_grad(false);
  AdamW optimizer(params, AdamWOptions().lr(options.lr()));  // weight decay 0: Adam
  Rng rng(options.seed());
  std::optional<EMA> ema;
  if (options.ema() > 0) ema.emplace(model, options.ema());
  model.train();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 1; step <= options.steps(); ++step) {
    Condition cond;
    auto x0 = data(options.batch(), rng, &cond).to(opts.device());
    if (cond.defined()) {
      cond = cond.to(opts.device());
      if (options.label_dropout() > 0) {
        auto drop =
            rng.rand({cond.size()}).lt(options.label_dropout()).to(opts.device());  // [B] bool
        cond = cond.where(drop, options.null_condition());
      }
    }
    auto loss = flow_matching_loss(model, x0, cond, options.time(), rng);
    optimizer.zero_grad();
    loss.backward();
    if (options.grad_clip() > 0) torch::nn::utils::clip_grad_norm_(params, options.grad_clip());
    optimizer.step();
    if (ema) ema->update(model);
    if (on_step) {
      PretrainRecord rec;
      rec.step = step;
      rec.loss = loss.item<double>();
      if (!std::isfinite(rec.loss))
        throw NumericalError("pretrain step " + std::to_string(step) + ": non-finite loss");
      rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      rec.weights = ema ? &ema->model() : &model;
      on_step(rec);
    }
  }
  if (ema) copy_weights(ema->model(), model);
  model.eval();
}

}  // namespace ramflow
