// The shared post-training loop (see include/ramflow/trainer.h).
#include "ramflow/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <sstream>

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/guidance.h"
#include "ramflow/metrics.h"
#include "ramflow/sde.h"
#include "ramflow/time.h"

namespace ramflow {

void check_reward_for(const Method& method, const Reward& reward) {
  if (method.needs_reward_gradient() && !reward.differentiable())
    throw ConfigError("method '" + method.name() + "' differentiates the reward, and reward '" +
                      reward.spec().value("type", std::string("?")) + "' is not differentiable");
}

void Trainer::check(const TrainerOptions& options, const Method& method, const Reward& reward,
                    int world_size) {
  if (options.sample_shape().empty()) throw ConfigError("trainer: sample_shape is required");
  if (options.groups() < 1 || options.group_size() < 1)
    throw ConfigError("trainer: groups and group_size must be >= 1");
  if (!(options.lr() > 0)) throw ConfigError("trainer: lr must be > 0");
  samplers().get(options.rollout().sampler());  // an unknown sampler
  sampling_grid(options.rollout());
  const int64_t B = options.groups() * options.group_size();
  if (options.minibatches() < 1 || B % options.minibatches())
    throw ConfigError("--minibatches " + std::to_string(options.minibatches()) +
                      " must divide the batch of --groups x --group-size = " + std::to_string(B) +
                      " endpoints");
  // A minibatch of b endpoints splits into W ranks' shares, each into A micro-batches.
  const int64_t A = options.grad_accum(), W = world_size, b = B / options.minibatches();
  if (A < 1) throw ConfigError("--grad-accum must be >= 1");
  if (b % (W * A))
    throw ConfigError(
        "a minibatch of " + std::to_string(b) +
        " endpoints (--groups x --group-size / "
        "--minibatches) does not split into " +
        std::to_string(W) + " process" + (W > 1 ? "es" : "") + " x " + std::to_string(A) +
        " micro-batch(es) (--grad-accum): make it a multiple of " + std::to_string(W * A));
  if (!(options.old_decay() >= 0 && options.old_decay() <= 1) || !(options.old_ramp() >= 0))
    throw ConfigError("--old-decay must be in [0, 1] and --old-ramp >= 0");
  if (!(options.eval_ema() >= 0 && options.eval_ema() < 1))
    throw ConfigError("--eval-ema must be in [0, 1)");
  if (options.grad_clip() < 0) throw ConfigError("--grad-clip must be >= 0");
  if (!(options.cfg() >= 0)) throw ConfigError("--cfg must be >= 0");
  const RolloutSpec spec = method.rollout_spec();
  if (options.cfg() != 1.0 && (spec.noise_level > 0 || spec.trajectory) && !spec.guided_loss)
    throw ConfigError("--cfg " + std::to_string(options.cfg()) + ": method " + method.name() +
                      " keeps its rollout trajectory and re-runs it in the loss without guidance; "
                      "use --cfg 1 with it");
  check_reward_for(method, reward);
}

Trainer::Trainer(VelocityFieldPtr policy, VelocityFieldPtr ref, RewardPtr reward, MethodPtr method,
                 TrainerOptions options, ConditionSource cond, CommunicatorPtr comm)
    : policy_(std::move(policy)),
      ref_(std::move(ref)),
      reward_(std::move(reward)),
      method_(std::move(method)),
      options_(std::move(options)),
      cond_(std::move(cond)),
      comm_(comm ? std::move(comm) : single_process()),
      rng_(options_.seed()) {
  TORCH_CHECK(policy_ && ref_ && reward_ && method_,
              "Trainer: policy, ref, reward and method are required");
  check(options_, *method_, *reward_, comm_->size());
  if (comm_->size() > 1) {
    // Rank w holds rows [i b + w b/W, i b + (w + 1) b/W) of each minibatch i (b rows each): its
    // share of every minibatch, so that each update is over the ranks' equal shares.
    const int64_t W = comm_->size(), B = options_.groups() * options_.group_size(),
                  M = options_.minibatches(), b = B / M, share = b / W;
    std::vector<torch::Tensor> all;
    for (int64_t w = 0; w < W; ++w) {
      std::vector<torch::Tensor> parts;
      for (int64_t i = 0; i < M; ++i)
        parts.push_back(torch::arange(i * b + w * share, i * b + (w + 1) * share, torch::kLong));
      all.push_back(torch::cat(parts));
    }
    rows_ = Rows(all[static_cast<size_t>(comm_->rank())], B);
    gathered_ = torch::cat(all);  // an all_gather's entry k is the step's row gathered_[k]
  }
  std::vector<torch::Tensor> params;
  for (auto& p : policy_->parameters())
    if (p.requires_grad()) params.push_back(p);
  if (params.empty()) throw ConfigError("trainer: the policy has no trainable parameters");
  optimizer_ = std::make_unique<AdamW>(params, AdamWOptions()
                                                   .lr(options_.lr())
                                                   .beta1(options_.beta1())
                                                   .beta2(options_.beta2())
                                                   .weight_decay(options_.weight_decay()));
  if (method_->uses_old_policy()) old_.emplace(*policy_, options_.old_decay(), options_.old_ramp());
  // The released Flow-GRPO warms its EMA up as min(0.9, (1 + n) / (10 + n)); min(decay, 0.1 n) is
  // as short.
  if (options_.eval_ema() > 0) eval_ema_.emplace(*policy_, options_.eval_ema(), 0.1);
}

std::string Trainer::eval_model_name() const {
  if (!eval_ema_) return "policy";
  std::ostringstream s;
  s << "ema " << options_.eval_ema();
  return s.str();
}

StepRecord Trainer::totals() const {
  StepRecord rec;
  rec.step = step_;
  rec.seconds = seconds_;
  rec.nfe = nfe_;
  rec.nfe_train = nfe_train_;
  rec.reward_evals = reward_evals_;
  return rec;
}

// --- state for checkpoints -----------------------------------------------------------------------
TrainerState Trainer::state() const {
  TrainerState st;
  for (const auto& [name, t] : optimizer_->state())
    if (name != "steps") st.tensors.emplace_back("optimizer." + name, t);
  MethodState ms = method_->state();
  for (auto& [name, t] : ms.tensors) st.tensors.emplace_back("method." + name, t);
  st.meta = {{"method", method_->name()},
             {"step", step_},
             {"seconds", seconds_},
             {"nfe", nfe_},
             {"nfe_train", nfe_train_},
             {"reward_evals", reward_evals_},
             {"optimizer_steps", optimizer_->steps()},
             {"old_updates", old_ ? old_->updates() : 0},
             {"ema_updates", eval_ema_ ? eval_ema_->updates() : 0},
             {"method_state", ms.values}};
  return st;
}

void Trainer::load_state(const NamedTensors& tensors, const nlohmann::json& meta,
                         const std::string& source) {
  auto bad = [&](const std::string& why) { return InputError(source + ": " + why); };
  if (!meta.is_object()) throw bad("no trainer state");
  const std::string method = meta.value("method", std::string());
  if (method != method_->name())
    throw bad("its trainer state is of method '" + method + "', this run's is '" + method_->name() +
              "'");
  for (const char* key :
       {"step", "nfe", "reward_evals", "optimizer_steps", "old_updates", "ema_updates"})
    if (!meta.contains(key) || !meta[key].is_number_integer() || meta[key].get<int64_t>() < 0)
      throw bad(std::string("trainer state field '") + key + "' is missing or not a count");
  for (const char* key : {"seconds", "nfe_train"})
    if (!meta.contains(key) || !meta[key].is_number())
      throw bad(std::string("trainer state field '") + key + "' is missing");
  load_model_tensors(tensors, "policy", *policy_, source);
  if (old_) load_model_tensors(tensors, "old", old_->model(), source);
  if (eval_ema_) load_model_tensors(tensors, "ema", eval_ema_->model(), source);
  const torch::Tensor *m = find_tensor(tensors, "optimizer.m"),
                      *v = find_tensor(tensors, "optimizer.v");
  const int64_t n = optimizer_->numel();  // the moments are float32 (adamw.h)
  if (!m || !v || m->numel() != n || v->numel() != n || m->scalar_type() != torch::kFloat ||
      v->scalar_type() != torch::kFloat)
    throw bad("the optimiser state is missing or does not match the " + std::to_string(n) +
              " trainable parameters");
  optimizer_->load_state(*m, *v, meta["optimizer_steps"].get<int64_t>());
  if (old_) old_->set_updates(meta["old_updates"].get<int64_t>());
  if (eval_ema_) eval_ema_->set_updates(meta["ema_updates"].get<int64_t>());
  step_ = meta["step"].get<int64_t>();
  seconds_ = meta["seconds"].get<double>();
  nfe_ = meta["nfe"].get<int64_t>();
  nfe_train_ = meta["nfe_train"].get<double>();
  reward_evals_ = meta["reward_evals"].get<int64_t>();
  MethodState ms;
  ms.values = meta.value("method_state", nlohmann::json::object());
  ms.tensors = tensors_under(tensors, "method");
  method_->load_state(ms, Policies{*policy_, *ref_, old(), reward_.get()});
}

namespace {
std::string time_text(double t) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g", t);
  return text;
}
}  // namespace

// A non-finite endpoint is the model's fault, not the reward's: say so, and where the rollout
// diverged.
void Trainer::check_rollout(const torch::Tensor& x0, const torch::Tensor& x1, const Condition& cond,
                            const torch::Tensor& trajectory, const std::vector<double>& grid,
                            VelocityFieldImpl& sampler_model, int64_t offset) {
  const auto x = x0.reshape({x0.size(0), -1}).to(torch::kCPU, torch::kFloat).contiguous();
  const float* p = x.data_ptr<float>();
  int64_t bad = -1;
  for (int64_t i = 0; i < x.numel() && bad < 0; ++i)
    if (!std::isfinite(p[i])) bad = i / x.size(1);
  if (bad < 0) return;
  std::string where;
  if (trajectory.defined()) {  // [N + 1, B, ...]: the first grid time with a non-finite x
    for (int64_t k = 1; k < trajectory.size(0) && where.empty(); ++k)
      if (!torch::isfinite(trajectory[k]).all().item<bool>())
        where = " at step " + std::to_string(k) + " of " + std::to_string(trajectory.size(0) - 1) +
                " (t = " + time_text(grid[static_cast<size_t>(k)]) + ")";
  } else {
    GuidedVelocityImpl guided(sampler_model, options_.cfg(), cond_.null);
    VelocityFieldImpl& v = cond.defined() && options_.cfg() != 1.0 ? guided : sampler_model;
    const int64_t k = first_nonfinite_step(
        [&](const torch::Tensor& xt, const torch::Tensor& t) { return v.forward(xt, t, cond); }, x1,
        options_.rollout());
    if (k > 0)
      where = " at sampler step " + std::to_string(k) + " of " +
              std::to_string(options_.rollout().steps()) +
              " (t = " + time_text(grid[static_cast<size_t>(k)]) + ")";
  }
  throw NumericalError(
      "the rollout diverged" + where + ": sample " + std::to_string(bad + offset) +
      " is non-finite (the model's velocity blew up; lower --lr or set --grad-clip)");
}

// --- rollout: on-policy endpoints from the ODE sampler, scored by the reward ---------------------
RolloutBatch Trainer::rollout(VelocityFieldImpl& sampler_model, Rng& rng) {
  RolloutBatch batch;
  batch.groups = options_.groups();
  batch.group_size = options_.group_size();
  // The step's batch has groups x group_size rows; this rank rolls out its rows (B of them), with
  // the draws of the whole batch (rows.h).
  const int64_t B_step = batch.groups * batch.group_size, B = rows_.size(B_step);
  batch.rows = rows_;
  // Samples are float32 whatever dtype the weights are held in (the model casts its input and
  // casts its output back), on the policy's device.
  const auto opts =
      torch::TensorOptions().dtype(torch::kFloat32).device(policy_->parameters().front().device());
  if (cond_.draw) {
    const Condition step_cond = cond_.draw(batch.groups, rng)
                                    .to(opts.device())
                                    .repeat_interleave(batch.group_size);  // B_step rows
    if (!rows_.all()) batch.step_id = step_cond.id();
    batch.cond = rows_.take(step_cond);  // B rows
  }
  std::vector<int64_t> shape = {B};
  shape.insert(shape.end(), options_.sample_shape().begin(), options_.sample_shape().end());
  auto x1 = rows_.randn(rng, shape, opts);  // [B, ...] ~ N(0, I)
  const RolloutSpec spec = method_->rollout_spec();
  if (spec.noise_level > 0 || spec.trajectory) {
    // Euler steps on the configured grid, stochastic on all steps or on a window of them.
    const auto grid = sampling_grid(options_.rollout());
    const int64_t N = static_cast<int64_t>(grid.size()) - 1;
    const auto sde_steps = spec.noise_level > 0
                               ? stochastic_steps(N, spec.window, spec.window_end, rng)
                               : std::vector<int64_t>{};
    Trajectory traj = sample_trajectory(sampler_model, x1, batch.cond,
                                        TrajectoryOptions()
                                            .grid(grid)
                                            .noise_level(spec.noise_level)
                                            .sde_steps(sde_steps)
                                            .log_prob_reduce(spec.log_prob_reduce)
                                            .rows(rows_),
                                        rng);
    batch.grid = traj.grid;
    batch.trajectory = traj.x;       // [N + 1, B, ...]
    batch.log_prob = traj.log_prob;  // [N, B]
    batch.sde_steps = traj.sde_steps;
    batch.x0 = traj.x[N];
    nfe_ += traj.nfe;
  } else {
    GuidedVelocityImpl guided(sampler_model, options_.cfg(), cond_.null);
    VelocityFieldImpl& v = batch.cond.defined() && options_.cfg() != 1.0 ? guided : sampler_model;
    batch.grid = sampling_grid(options_.rollout());
    const bool overlap =
        reward_->overlap() && !samplers().get(options_.rollout().sampler()).stochastic && B > 1;
    if (overlap) {
      // Each part goes to the reward server as soon as it is rolled out, while the next part is:
      // its scoring overlaps the rest of the rollout (and, on a server that answers requests
      // concurrently, the other parts' scoring). The noise x1 was drawn for the whole batch and ODE
      // samplers draw nothing more, so the endpoints are those of one rollout.
      constexpr int64_t kParts = 4;
      const int64_t parts = std::min(B, kParts);
      std::vector<torch::Tensor> x0s;
      std::vector<std::future<ScoredBatch>>
          pending;  // every part's request in flight as soon as it exists
      for (int64_t c = 0; c < parts; ++c) {
        const int64_t lo = c * B / parts, hi = (c + 1) * B / parts;
        const auto x1_c = x1.slice(0, lo, hi);
        const auto cond_c = batch.cond.slice(lo, hi);
        auto result = sample(v, x1_c, cond_c, options_.rollout(), nullptr);  // [hi - lo, ...]
        if (c == 0) nfe_ += result.nfe;  // per sample: every part takes the same steps
        check_rollout(result.x0, x1_c, cond_c, {}, batch.grid, sampler_model, lo);
        pending.push_back(std::async(std::launch::async, [this, x0 = result.x0, cond_c] {
          return score_terms_checked(*reward_, x0, cond_c);
        }));
        x0s.push_back(result.x0);
      }
      std::vector<ScoredBatch> scores;
      for (auto& p : pending) scores.push_back(p.get());
      batch.x0 = torch::cat(x0s, 0);  // [B, ...]
      std::vector<torch::Tensor> totals;
      for (const auto& s : scores) totals.push_back(s.total);
      batch.reward = torch::cat(totals, 0);                     // [B]
      for (const auto& [name, first] : scores.front().terms) {  // a term every part has
        std::vector<torch::Tensor> parts_of;
        for (const auto& s : scores)
          if (auto it = s.terms.find(name); it != s.terms.end()) parts_of.push_back(it->second);
        if (parts_of.size() == scores.size()) batch.reward_terms[name] = torch::cat(parts_of, 0);
      }
    } else {
      auto result = sample(v, x1, batch.cond, options_.rollout(), &rng, rows_);
      batch.x0 = result.x0;  // [B, ...]
      nfe_ += result.nfe;
    }
  }
  if (!batch.reward.defined()) {
    check_rollout(batch.x0, x1, batch.cond, batch.trajectory, batch.grid, sampler_model);
    ScoredBatch scored = score_terms_checked(*reward_, batch.x0, batch.cond);
    batch.reward = scored.total;  // [B]
    batch.reward_terms = std::move(scored.terms);
  }
  if (spec.reward_gradient) batch.reward_grad = reward_gradient(*reward_, batch.x0, batch.cond);
  return batch;
}

void Trainer::gather_step(RolloutBatch& batch) {
  // The ranks' rewards in rank order, put back in the step's order: entry k is row gathered_[k].
  const auto gathered = comm_->all_gather(batch.reward.to(torch::kFloat));  // [B_step]
  batch.step_reward = torch::empty_like(gathered)
                          .index_copy_(0, gathered_.to(gathered.device()), gathered)
                          .to(batch.reward.device());
}

void Trainer::agree(std::string& skipped) {
  if (comm_->size() == 1) return;
  const auto failed = comm_->all_gather(
      torch::full({1}, skipped.empty() ? int64_t{0} : int64_t{1}, torch::kLong));  // [W]
  const auto first = failed.nonzero();
  if (first.numel() == 0) return;
  const int who = static_cast<int>(first[0][0].item<int64_t>());
  skipped = comm_->broadcast_text(skipped, who);
  skipped += " (on rank " + std::to_string(who) + ")";
}

namespace {
// A method's metric that is a maximum over the batch ("ratio_max_deviation"): the maximum over
// micro-batches and ranks, where the others are means.
bool is_max_metric(const std::string& name) { return name.find("max") != std::string::npos; }
}  // namespace

Trainer::MinibatchLoss Trainer::minibatch_loss(const RolloutBatch& batch, int64_t i,
                                               const Policies& models, Rng& rng) {
  const int64_t M = options_.minibatches(), A = options_.grad_accum();
  const int64_t b_step = options_.groups() * options_.group_size() / M;  // the minibatch's rows
  const int64_t b = batch.size() / M;                                    // this rank's share
  RolloutBatch mb = M == 1 ? batch : batch.slice(i * b, (i + 1) * b);
  // Its rows as rows of the minibatch: the loss's draws are the whole minibatch's (rows.h).
  mb.rows =
      mb.rows.all() ? (A > 1 ? Rows::range(0, b, b) : Rows()) : mb.rows.within(i * b_step, b_step);
  MinibatchLoss out;
  optimizer_->zero_grad();
  if (A == 1) {
    const LossOutput loss = method_->loss(mb, models, rng);
    out.loss = loss.loss.item<double>();
    out.metrics = loss.metrics;
    out.finite = std::isfinite(out.loss);
    if (out.finite) loss.loss.backward();
    return out;
  }
  // A micro-batches of m rows: each loss draws what the whole minibatch's loss would draw (from
  // the stream where the minibatch starts) and takes its rows; the mean of the A means, and the
  // sum of the A gradients of loss / A, are the minibatch's.
  const int64_t m = b / A;
  const Rng start = rng.clone();
  for (int64_t a = 0; a < A; ++a) {
    Rng r = start.clone();
    const LossOutput loss = method_->loss(mb.slice(a * m, (a + 1) * m), models, r);
    const double value = loss.loss.item<double>();
    if (!std::isfinite(value)) out.finite = false;
    out.loss += value / static_cast<double>(A);
    for (const auto& [name, v] : loss.metrics) {
      double& m = out.metrics[name];
      m = is_max_metric(name) ? (a == 0 ? v : std::max(m, v)) : m + v / static_cast<double>(A);
    }
    if (out.finite) (loss.loss / static_cast<double>(A)).backward();
    if (a + 1 == A) rng = r;  // where the stream stands after the minibatch's draws
  }
  return out;
}

void Trainer::reduce(MinibatchLoss& out) {
  const int64_t W = comm_->size();
  if (W == 1) return;
  // One vector of sums [loss, non-finite, metrics...] and one of maxima; every rank's metric names
  // are the method's, the same on every rank. Each rank's values are means over its equal share.
  std::vector<double> sums = {out.loss, out.finite ? 0.0 : 1.0}, maxima;
  for (const auto& [name, v] : out.metrics) (is_max_metric(name) ? maxima : sums).push_back(v);
  auto s = torch::tensor(sums, torch::kDouble);
  comm_->all_reduce_sum(s);
  torch::Tensor x;
  if (!maxima.empty()) {
    x = torch::tensor(maxima, torch::kDouble);
    comm_->all_reduce_max(x);
  }
  const double* sp = s.data_ptr<double>();
  out.loss = sp[0] / static_cast<double>(W);
  out.finite = sp[1] == 0;
  size_t k = 2, j = 0;
  for (auto& [name, v] : out.metrics)
    v = is_max_metric(name) ? x.data_ptr<double>()[j++] : sp[k++] / static_cast<double>(W);
  if (!out.finite) return;
  // The minibatch's gradient: the mean of the ranks' (each the gradient of the mean over its
  // share).
  for (size_t g = 0; g < optimizer_->groups(); ++g) {
    torch::Tensor grad = optimizer_->gradients(g);
    comm_->all_reduce_sum(grad);
    grad.div_(static_cast<double>(W));
  }
}

StepRecord Trainer::step() {
  const auto start = std::chrono::steady_clock::now();
  Rng rng = rng_.fork(static_cast<uint64_t>(step_));
  policy_->train();
  // A method whose loss re-runs its guided rollout sees guided views of its models (method.h).
  const RolloutSpec spec = method_->rollout_spec();
  std::optional<GuidedVelocityImpl> guided_policy, guided_ref, guided_old;
  if (spec.guided_loss && options_.cfg() != 1.0 && cond_.draw) {
    guided_policy.emplace(*policy_, options_.cfg(), cond_.null);
    guided_ref.emplace(*ref_, options_.cfg(), cond_.null);
    if (old()) guided_old.emplace(*old(), options_.cfg(), cond_.null);
  }
  VelocityFieldImpl* old_model = guided_old ? &*guided_old : old();
  Policies models{guided_policy ? *guided_policy : *policy_, guided_ref ? *guided_ref : *ref_,
                  old_model, reward_.get()};
  method_->begin_step(step_, models);
  VelocityFieldImpl* chosen = method_->rollout_model(models);
  std::string skipped;  // why the step was skipped (StepRecord::skipped), else empty
  auto skip = [&](const std::string& why) {
    skipped = "step " + std::to_string(step_ + 1) + ": " + why;
  };
  RolloutBatch batch;
  try {
    batch = rollout(chosen                                      ? *chosen
                    : old_model && method_->rollouts_from_old() ? *old_model
                                                                : models.policy,
                    rng);
  } catch (const NumericalError& e) {  // a diverged rollout, or a non-finite reward
    skip(e.what());
  }
  double comm_seconds = 0;  // time in collectives (rank-local waiting included)
  auto timed = [&](const std::function<void()>& f) {
    if (comm_->size() == 1) return f();  // nothing to wait for
    const auto t0 = std::chrono::steady_clock::now();
    f();
    comm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  timed([&] { agree(skipped); });  // a rank whose rollout failed skips the step on every rank
  if (skipped.empty()) {
    reward_evals_ += options_.groups() * options_.group_size();
    if (comm_->size() > 1) timed([&] { gather_step(batch); });
  } else {
    batch.reward = torch::Tensor();  // the step has no rewards
  }
  const double rollout_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // --- loss and optimiser steps, one per minibatch -----------------------------------------------
  const int64_t M = options_.minibatches();
  double loss = 0, grad_norm = 0;
  std::map<std::string, double> metrics;  // each method metric, the mean over the minibatches
  if (skipped.empty()) {
    {
      torch::NoGradGuard no_grad;
      method_->prepare(batch, models, rng);
    }
    for (int64_t i = 0; i < M; ++i) {
      MinibatchLoss out = minibatch_loss(batch, i, models, rng);
      timed([&] { reduce(out); });
      if (!out.finite) {
        skip("method '" + method_->name() + "' produced a non-finite loss");
        break;
      }
      const double norm = optimizer_->grad_norm();
      grad_norm = std::max(grad_norm, norm);
      if (!std::isfinite(norm)) {
        skip("method '" + method_->name() + "' produced a non-finite gradient");
        break;
      }
      optimizer_->clip_grad_norm(norm, options_.grad_clip());
      optimizer_->step();
      loss += out.loss / static_cast<double>(M);
      // Each endpoint is in one minibatch, so per-endpoint counts (nfe_train) are the minibatches'
      // mean too.
      for (const auto& [name, v] : out.metrics) metrics[name] += v / static_cast<double>(M);
    }
    if (auto it = metrics.find("nfe_train"); it != metrics.end()) nfe_train_ += it->second;
  }
  if (skipped.empty()) {
    if (old_)
      old_->update(*policy_);  // the released code steps its EMA once per epoch (= step here)
    if (eval_ema_) eval_ema_->update(*policy_);
  }
  ++step_;
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // --- record ------------------------------------------------------------------------------------
  StepRecord rec = totals();
  rec.skipped = skipped;
  rec.rollout_seconds = rollout_seconds;
  rec.comm_seconds = comm_seconds;
  rec.loss = skipped.empty() ? loss : std::nan("");
  rec.grad_norm = skipped.empty() ? grad_norm : std::nan("");
  if (!batch.reward.defined()) {  // skipped before the reward was scored
    rec.reward_mean = rec.reward_std = rec.reward_min = rec.reward_max = std::nan("");
    return rec;
  }
  // Reward statistics of the step's batch (every reward is finite: score_terms_checked).
  const auto r = batch.step_rewards().to(torch::kCPU, torch::kDouble).contiguous();
  const MeanStd s =
      mean_std(std::vector<double>(r.data_ptr<double>(), r.data_ptr<double>() + r.numel()));
  rec.reward_mean = s.mean;
  rec.reward_std = s.std;
  rec.reward_min = s.min;
  rec.reward_max = s.max;
  rec.metrics = std::move(metrics);
  // Each named part of the reward on its own: "reward/<name>" (the step's mean: the mean of the
  // ranks' means over their equal shares).
  if (!batch.reward_terms.empty()) {
    std::vector<double> means;
    for (const auto& [name, t] : batch.reward_terms)
      means.push_back(t.to(torch::kDouble).mean().item<double>());
    auto m = torch::tensor(means, torch::kDouble);
    if (comm_->size() > 1) {
      comm_->all_reduce_sum(m);
      m.div_(static_cast<double>(comm_->size()));
    }
    size_t k = 0;
    for (const auto& [name, t] : batch.reward_terms)
      rec.metrics["reward/" + name] = m.data_ptr<double>()[k++];
  }
  return rec;
}

}  // namespace ramflow
