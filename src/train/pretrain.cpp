// Flow-matching pretraining (see include/ramflow/pretrain.h).
#include "ramflow/pretrain.h"

#include <chrono>
#include <cmath>
#include <optional>

#include <torch/torch.h>

#include "ramflow/adamw.h"
#include "ramflow/checkpoint.h"
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

Pretrainer::Pretrainer(VelocityFieldImpl& model, DataSampler data, PretrainOptions options)
    : model_(model), data_(std::move(data)), options_(std::move(options)), rng_(options_.seed()) {
  const auto& o = options_;
  if (o.steps() < 1 || o.batch() < 1 || !(o.lr() > 0))
    throw ConfigError("pretrain: steps, batch and lr must be positive");
  if (!(o.label_dropout() >= 0 && o.label_dropout() <= 1))
    throw ConfigError("pretrain: label dropout must be in [0, 1]");
  if (!(o.ema() >= 0 && o.ema() < 1)) throw ConfigError("pretrain: ema must be in [0, 1)");
  o.time().validate();
  params_ = model_.parameters();
  TORCH_CHECK(!params_.empty(), "pretrain: the model has no parameters");
  optimizer_ = std::make_unique<AdamW>(params_, AdamWOptions().lr(o.lr()));  // weight decay 0
  if (o.ema() > 0) ema_.emplace(model_, o.ema());
  model_.train();
  start_ = std::chrono::steady_clock::now();
}

PretrainRecord Pretrainer::step() {
  const auto opts = params_.front().options().requires_grad(false);
  Rng& rng = rng_;
  Condition cond;
  auto x0 = data_(options_.batch(), rng, &cond).to(opts.device());
  if (cond.defined()) {
    cond = cond.to(opts.device());
    if (options_.label_dropout() > 0) {
      auto drop = rng.rand({cond.size()}).lt(options_.label_dropout()).to(opts.device());  // [B]
      cond = cond.where(drop, options_.null_condition());
    }
  }
  auto loss = flow_matching_loss(model_, x0, cond, options_.time(), rng);
  optimizer_->zero_grad();
  loss.backward();
  if (options_.grad_clip() > 0) torch::nn::utils::clip_grad_norm_(params_, options_.grad_clip());
  optimizer_->step();
  if (ema_) ema_->update(model_);
  ++steps_;
  PretrainRecord rec;
  rec.step = steps_;
  rec.loss = loss.item<double>();
  if (!std::isfinite(rec.loss))
    throw NumericalError("pretrain step " + std::to_string(steps_) + ": non-finite loss");
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  rec.weights = &weights();
  return rec;
}

const VelocityFieldImpl& Pretrainer::weights() const { return ema_ ? ema_->model() : model_; }

NamedTensors Pretrainer::state() const {
  NamedTensors out;
  for (const auto& [name, t] : optimizer_->state()) out.emplace_back("optimizer." + name, t);
  out.emplace_back("rng", rng_.state());
  if (ema_)
    for (auto& t : model_tensors("ema", ema_->model())) out.push_back(t);
  return out;
}

void Pretrainer::load_state(const NamedTensors& tensors, int64_t steps, const std::string& source) {
  const torch::Tensor* m = find_tensor(tensors, "optimizer.m");
  const torch::Tensor* v = find_tensor(tensors, "optimizer.v");
  if (!m || !v) throw InputError(source + ": no optimizer state (optimizer.m, optimizer.v)");
  if (m->numel() != optimizer_->numel() || v->numel() != optimizer_->numel())
    throw InputError(source + ": the optimizer state has " + std::to_string(m->numel()) +
                     " entries for a model of " + std::to_string(optimizer_->numel()) +
                     " parameters");
  const torch::Tensor* rng = find_tensor(tensors, "rng");
  if (!rng || rng->scalar_type() != torch::kByte)
    throw InputError(source + ": no random stream state (rng, uint8)");
  try {
    rng_.set_state(*rng);
  } catch (const c10::Error&) {
    throw InputError(source + ": 'rng' is not a random generator's state");
  }
  optimizer_->load_state(*m, *v, steps);
  if (ema_) {
    load_model_tensors(tensors, "ema", ema_->model(), source);
    ema_->set_updates(steps);
  }
  steps_ = steps;
}

void Pretrainer::finish() {
  if (ema_) copy_weights(ema_->model(), model_);
  model_.eval();
}

void pretrain_flow_matching(VelocityFieldImpl& model, const DataSampler& data,
                            const PretrainOptions& options,
                            const std::function<void(const PretrainRecord&)>& on_step) {
  Pretrainer pretrainer(model, data, options);
  while (pretrainer.steps_done() < options.steps()) {
    const PretrainRecord rec = pretrainer.step();
    if (on_step) on_step(rec);
  }
  pretrainer.finish();
}

}  // namespace ramflow
