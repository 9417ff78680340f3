// RAM with the exact tilt (see include/ramflow/ram_tilt.h for the derivation).
#include "ramflow/ram_tilt.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "ramflow/conventions.h"
#include "ramflow/errors.h"
#include "ramflow/renoise.h"
#include "ramflow/safetensors.h"
#include "ramflow/stage_state.h"

namespace ramflow {

void RAMTiltOptions::validate() const {
  if (draws_ < 1) throw ConfigError("ram-tilt: draws must be >= 1");
  if (stages_ < 1) throw ConfigError("ram-tilt: tilt_stages must be >= 1");
  if (stage_steps_ < 1) throw ConfigError("ram-tilt: tilt_stage_steps must be >= 1");
  if (normalizer_ != "running" && normalizer_ != "group")
    throw ConfigError("ram-tilt: tilt_normalizer must be running or group, got '" + normalizer_ +
                      "'");
  time_.validate();
}

nlohmann::json RAMTiltOptions::to_json() const {
  return {{"multiplier", multiplier_},
          {"stage_multiplier", multiplier_ / static_cast<double>(stages_)},
          {"draws", draws_},
          {"stages", stages_},
          {"stage_steps", stage_steps_},
          {"normalizer", normalizer_},
          {"control", control_},
          {"time_dist", time_.kind},
          {"time_alpha", time_.alpha},
          {"time_mean", time_.mean},
          {"time_std", time_.std}};
}

RAMTilt::RAMTilt(RAMTiltOptions options) : options_(std::move(options)) { options_.validate(); }

void RAMTilt::begin_step(int64_t step, const Policies& models) {
  const int64_t due = std::min(options_.stages(), step / options_.stage_steps() + 1);
  if (due > stage_) {
    frozen_ = frozen_copy(models.policy);  // p_{s-1}: the model that ended the previous stage
    stage_ = due;
    log_sum_count_.clear();
  }
}

MethodState RAMTilt::state() const {
  MethodState st;
  save_stage(st, {stage_, frozen_});
  // The running normaliser as tensors (float64: exact), one entry per condition label.
  const auto n = static_cast<int64_t>(log_sum_count_.size());
  auto keys = torch::empty({n}, torch::kLong);
  auto sums = torch::empty({n, 2}, torch::kDouble);  // [label, (log sum e^{d r}, count)]
  int64_t i = 0;
  for (const auto& [key, sc] : log_sum_count_) {
    keys[i] = key;
    sums[i][0] = sc.first;
    sums[i][1] = sc.second;
    ++i;
  }
  st.tensors.emplace_back("normalizer.labels", keys);
  st.tensors.emplace_back("normalizer.log_sum_count", sums);
  return st;
}

void RAMTilt::load_state(const MethodState& st, const Policies& models) {
  StageState restored = load_stage(st, options_.stages(), models, name());
  stage_ = restored.stage;
  frozen_ = restored.frozen;
  const torch::Tensor* keys = find_tensor(st.tensors, "normalizer.labels");
  const torch::Tensor* sums = find_tensor(st.tensors, "normalizer.log_sum_count");
  if (!keys || !sums || keys->scalar_type() != torch::kLong ||
      sums->scalar_type() != torch::kDouble || keys->dim() != 1 || sums->dim() != 2 ||
      sums->size(0) != keys->size(0) || sums->size(1) != 2)
    throw InputError("ram-tilt state: the running normaliser is missing or malformed");
  log_sum_count_.clear();
  const auto k = keys->contiguous();
  const auto sc = sums->contiguous();
  for (int64_t i = 0; i < k.size(0); ++i)
    log_sum_count_[k.data_ptr<int64_t>()[i]] = {sc.data_ptr<double>()[2 * i],
                                                sc.data_ptr<double>()[2 * i + 1]};
}

VelocityFieldImpl& RAMTilt::stage_model(const Policies& models) const {
  return frozen_ ? *frozen_ : models.ref;
}

VelocityFieldImpl* RAMTilt::rollout_model(const Policies& models) { return &stage_model(models); }

torch::Tensor RAMTilt::tilt_weights(const torch::Tensor& r, int64_t group_size, double d) {
  TORCH_CHECK(r.dim() == 1 && group_size > 0 && r.size(0) % group_size == 0, "ram-tilt: rewards ",
              r.sizes(), " do not split into groups of ", group_size);
  // log w = d r - log mean_group e^{d r}, in double and shifted by the group max (no overflow at
  // large d).
  const auto z = (d * r.to(torch::kDouble)).view({-1, group_size});  // [P, G]
  const auto log_mean = torch::logsumexp(z, 1, true) - std::log(static_cast<double>(group_size));
  return (z - log_mean).exp().view({-1}).to(r.scalar_type());  // [B]
}

void RAMTilt::prepare(RolloutBatch& batch, const Policies&, Rng&) {
  const double d = options_.multiplier() / static_cast<double>(options_.stages());
  if (options_.normalizer() == "group") {
    batch.extras["weight"] = batch.own(tilt_weights(batch.step_rewards(), batch.group_size, d));
    return;
  }
  // Within a stage the rollouts come from one frozen model, so E_s[e^{d r} | c] is a constant: the
  // mean over every endpoint of the stage so far estimates it with a bias that shrinks with the
  // stage's length, where a group's own mean keeps the self-normalised estimator's O(1/G) bias at
  // every step.
  // Over the whole step's endpoints, in the step's order (a process of a data-parallel step holds
  // some of them, and accumulates the same normaliser as every other).
  const auto z = (d * batch.step_rewards().to(torch::kCPU, torch::kDouble)).contiguous();  // [B]
  // One normaliser per condition id (E_s[e^{d r} | c] differs between conditions).
  const torch::Tensor& ids = batch.step_reward.defined() ? batch.step_id : batch.cond.id();
  const torch::Tensor labels = ids.defined() ? ids.to(torch::kCPU).contiguous() : torch::Tensor();
  const double* zp = z.data_ptr<double>();
  const int64_t B = z.numel();
  auto key = [&](int64_t i) {
    return labels.defined() ? labels.data_ptr<int64_t>()[i] : int64_t{-1};
  };
  for (int64_t i = 0; i < B; ++i) {  // log-sum-exp accumulation: no overflow at large d r
    auto [it, fresh] = log_sum_count_.try_emplace(key(i), zp[i], 1.0);
    if (fresh) continue;
    auto& [log_sum, count] = it->second;
    const double hi = std::max(log_sum, zp[i]);
    log_sum = hi + std::log(std::exp(log_sum - hi) + std::exp(zp[i] - hi));
    count += 1;
  }
  auto w = torch::empty({B}, torch::kDouble);
  double* wp = w.data_ptr<double>();
  for (int64_t i = 0; i < B; ++i) {
    const auto& [log_sum, count] = log_sum_count_.at(key(i));
    wp[i] = std::exp(zp[i] - (log_sum - std::log(count)));
  }
  batch.extras["weight"] = batch.own(w.to(batch.reward.options()));
}

LossOutput RAMTilt::loss(const RolloutBatch& batch, const Policies& models, Rng& rng) {
  const int64_t B = batch.x0.size(0), K = options_.draws();
  const auto it = batch.extras.find("weight");
  TORCH_CHECK(it != batch.extras.end() && it->second.numel() == B,
              "ram-tilt: the batch has no weights [", B, "] (prepare() was not called)");
  const auto w =
      it->second.to(batch.x0.options()).view({B, 1, 1});  // [B, 1, 1]: endpoint b's K draws

  const Renoised p = renoise(batch.x0, batch.cond, K, options_.time(), rng, batch.rows);  // [B*K]
  const auto y = velocity_target(p.x0, p.eps);               // Y = eps - x0
  const auto v = models.policy.forward(p.x_t, p.t, p.cond);  // the only graph
  const auto sqrt_w = w.sqrt();
  torch::Tensor res;  // [B, K, n]
  if (options_.control()) {
    torch::Tensor v_s;
    {
      torch::NoGradGuard no_grad;
      v_s = stage_model(models).forward(p.x_t, p.t, p.cond);  // the frozen stage model
    }
    // (3): res = sqrt(w) (v - v_s) - ((w - 1) / sqrt(w)) (Y - v_s)
    res = sqrt_w * (v - v_s).view({B, K, -1}) - ((w - 1) / sqrt_w) * (y - v_s).view({B, K, -1});
  } else {
    res = sqrt_w * (v - y).view({B, K, -1});  // (2): w |v - Y|^2
  }
  LossOutput out;
  out.loss = res.pow(2).mean();
  torch::NoGradGuard no_grad;
  const auto wd = it->second.to(torch::kDouble);
  // Effective sample size of the weights as a fraction of B: 1 when the reward is flat, small when
  // a few endpoints carry the tilt (then d = m / S is too large for G).
  out.metrics["weight_ess"] =
      (wd.sum().pow(2) / (wd.pow(2).sum() * static_cast<double>(B))).item<double>();
  out.metrics["weight_max"] = wd.max().item<double>();
  out.metrics["stage"] = static_cast<double>(stage_);
  out.metrics["nfe_train"] =
      static_cast<double>(K * (options_.control() ? 2 : 1));  // policy (, stage model)
  return out;
}

void RAMTilt::add_params(ParamTable& t) {
  t.group(
      "RAM with the exact tilt (method ram-tilt; uses --multiplier, --draws and the time_* keys)");
  t.integer("tilt_stages", 1, "S: stages, each tilting the previous stage's model by e^{(m/S) r}",
            1, 1000);
  t.integer("tilt_stage_steps", 300, "steps per stage (the last stage runs on)", 1, 100000000);
  t.text(
      "tilt_normalizer", "running",
      "estimate of E[e^{(m/S) r}]: running = every endpoint of the stage so far (per condition), "
      "group = the step's group",
      {"running", "group"});
  t.boolean("tilt_control", false,
            "anchor the regression to the stage model (lower variance; biased where the model's "
            "velocity is "
            "not the mean of its own re-noised samples)");
}

MethodPtr RAMTilt::from_config(const Config& cfg) {
  return std::make_unique<RAMTilt>(RAMTiltOptions()
                                       .multiplier(cfg.number("multiplier"))
                                       .draws(cfg.integer("draws"))
                                       .stages(cfg.integer("tilt_stages"))
                                       .stage_steps(cfg.integer("tilt_stage_steps"))
                                       .normalizer(cfg.text("tilt_normalizer"))
                                       .control(cfg.boolean("tilt_control"))
                                       .time(time_distribution_from(cfg)));
}

}  // namespace ramflow
