// The shared post-training loop (see include/ramflow/trainer.h).
#include "ramflow/trainer.h"

#include <chrono>
#include <cmath>

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

Trainer::Trainer(VelocityFieldPtr policy, VelocityFieldPtr ref, RewardPtr reward, MethodPtr method,
                 TrainerOptions options, CondSampler cond)
    : policy_(std::move(policy)),
      ref_(std::move(ref)),
      reward_(std::move(reward)),
      method_(std::move(method)),
      options_(std::move(options)),
      cond_(std::move(cond)),
      rng_(options_.seed()) {
  TORCH_CHECK(policy_ && ref_ && reward_ && method_, "Trainer: policy, ref, reward and method are required");
  if (options_.sample_shape().empty()) throw ConfigError("trainer: sample_shape is required");
  if (options_.groups() < 1 || options_.group_size() < 1)
    throw ConfigError("trainer: groups and group_size must be >= 1");
  if (!(options_.lr() > 0)) throw ConfigError("trainer: lr must be > 0");
  samplers().get(options_.rollout().sampler());  // fail early on an unknown sampler
  std::vector<torch::Tensor> params;
  for (auto& p : policy_->parameters())
    if (p.requires_grad()) params.push_back(p);
  if (params.empty()) throw ConfigError("trainer: the policy has no trainable parameters");
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      params, torch::optim::AdamWOptions(options_.lr())
                  .betas({options_.beta1(), options_.beta2()})
                  .weight_decay(options_.weight_decay()));
  if (method_->uses_old_policy()) old_.emplace(*policy_, options_.old_decay(), options_.old_ramp());
}

// --- rollout: on-policy endpoints from the ODE sampler, scored by the reward ------------------------
RolloutBatch Trainer::rollout(Rng& rng) {
  RolloutBatch batch;
  batch.groups = options_.groups();
  batch.group_size = options_.group_size();
  const int64_t B = batch.groups * batch.group_size;
  auto opts = policy_->parameters().front().options().requires_grad(false);
  if (cond_) {
    auto labels = cond_(batch.groups, rng);                                   // [P]
    batch.cond = labels.to(opts.device()).repeat_interleave(batch.group_size);  // [B]
  }
  std::vector<int64_t> shape = {B};
  shape.insert(shape.end(), options_.sample_shape().begin(), options_.sample_shape().end());
  auto x1 = rng.randn(shape, opts);                                           // [B, ...] ~ N(0, I)
  VelocityFieldImpl& sampler_model = old_ ? old_->model() : *policy_;
  auto result = sample(sampler_model, x1, batch.cond, options_.rollout(), &rng);
  batch.x0 = result.x0;                                                       // [B, ...]
  nfe_ += result.nfe;
  batch.reward = score_checked(*reward_, batch.x0, batch.cond);               // [B]
  reward_evals_ += B;
  return batch;
}

StepRecord Trainer::step() {
  const auto start = std::chrono::steady_clock::now();
  Rng rng = rng_.fork(static_cast<uint64_t>(step_));
  policy_->train();
  RolloutBatch batch = rollout(rng);

  // --- loss and optimiser step ---------------------------------------------------------------------
  Policies models{*policy_, *ref_, old()};
  LossOutput out = method_->loss(batch, models, rng);
  const double loss = out.loss.item<double>();
  if (!std::isfinite(loss))
    throw NumericalError("step " + std::to_string(step_ + 1) + ": method '" + method_->name() +
                         "' produced a non-finite loss");
  optimizer_->zero_grad();
  out.loss.backward();
  const double max_norm = options_.grad_clip() > 0 ? options_.grad_clip()
                                                   : std::numeric_limits<double>::infinity();
  const double grad_norm = torch::nn::utils::clip_grad_norm_(policy_->parameters(), max_norm);
  if (!std::isfinite(grad_norm))
    throw NumericalError("step " + std::to_string(step_ + 1) + ": method '" + method_->name() +
                         "' produced a non-finite gradient");
  optimizer_->step();
  if (old_) old_->update(*policy_);  // the released code steps its EMA once per epoch (= step here)
  ++step_;
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // --- record --------------------------------------------------------------------------------------
  StepRecord rec;
  rec.step = step_;
  rec.seconds = seconds_;
  auto r = batch.reward.to(torch::kDouble);
  rec.reward_mean = r.mean().item<double>();
  rec.reward_std = r.numel() > 1 ? r.std().item<double>() : 0.0;
  rec.reward_min = r.min().item<double>();
  rec.reward_max = r.max().item<double>();
  rec.loss = loss;
  rec.grad_norm = grad_norm;
  rec.nfe = nfe_;
  rec.reward_evals = reward_evals_;
  rec.metrics = std::move(out.metrics);
  return rec;
}

}  // namespace ramflow
