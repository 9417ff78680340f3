#pragma once
// The one post-training loop every method plugs into, in pipeline order:
//   rollout (the method's RolloutSpec: ODE sampler, or SDE trajectory with log-densities; no grad)
//   -> reward (checked finite; its gradient if asked) -> Method::prepare on the whole batch
//   -> for each of M minibatches: method loss -> AdamW step
//   -> EMA "old" policy update -> step record.
// The first minibatch is exactly on-policy; later ones are slightly off-policy (PPO-style reuse).
// A remote reward (Reward::overlap) is scored in parts: the reward server scores one part of the
// batch while the next part is rolled out (ODE samplers, which draw no noise, so the endpoints are
// the same). Numerical faults skip the step instead of ending the run (StepRecord::skipped): a
// rollout that diverged is named as such (with the sampler step where it did), never blamed on the
// reward. Conditions: the ConditionSource (the task's) draws one condition per group; every sample
// of the group carries it through the rollout, the reward and the loss. With cfg != 1 the rollout
// samples the guided velocity v_u + w (v_c - v_u) with the source's null condition; the losses
// still use the conditional prediction (guidance.h). Each step draws from its own random stream
// rng.fork(step), so a run is reproducible step by step.
// Several processes (a Communicator of W ranks, docs/distributed.md): each rank rolls out, scores
// and differentiates its share of every minibatch (the step's random draws are made for the whole
// batch and each rank takes its rows, rows.h), the rewards are gathered so that group and step
// statistics are the whole step's, the gradients are summed over the ranks on AdamW's flat
// buffers, and every rank takes the same optimiser step: the run is the one-process run with the
// same global batch, up to the summation order of the gradient's parts. Gradient accumulation
// (grad_accum A) splits each rank's share of a minibatch into A micro-batches, one backward pass
// each, with the same draws and the same update as the whole minibatch at once.
#include <functional>
#include <memory>
#include <optional>

#include "ramflow/adamw.h"
#include "ramflow/checkpoint.h"
#include "ramflow/communicator.h"
#include "ramflow/method.h"
#include "ramflow/reward.h"
#include "ramflow/sampler.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

struct TrainerOptions {
  TORCH_ARG(std::vector<int64_t>, sample_shape) = {};  // shape of one endpoint, e.g. {2} (required)
  TORCH_ARG(int64_t, groups) = 1;                      // P condition groups per step
  TORCH_ARG(int64_t, group_size) = 32;                 // G endpoints per group
  TORCH_ARG(SampleOptions, rollout) = SampleOptions();  // rollout sampler, steps and grid shift
  TORCH_ARG(double, cfg) = 1.0;  // classifier-free guidance scale of ODE rollouts (guidance.h)
  TORCH_ARG(double, lr) = 1e-4;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, grad_clip) = 0.0;   // max global grad norm; 0 = off
  TORCH_ARG(int64_t, minibatches) = 1;  // optimiser updates per rollout, each on 1/M of the batch
  TORCH_ARG(int64_t, grad_accum) = 1;   // backward passes per update, each on 1/A of a minibatch
  TORCH_ARG(double, old_decay) = 0.9;   // EMA "old" policy decay (methods that use it)
  TORCH_ARG(double, old_ramp) = 0.01;   // its warm-up: decay = min(old_decay, old_ramp * updates)
  TORCH_ARG(double, eval_ema) = 0.0;  // > 0: an EMA of the policy (warm-up ramp 0.1) for evaluation
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Where a trainer's conditions come from (the task's, Task::sample_conditions and
/// Task::null_condition): `draw` gives the conditions of P groups (P rows; each is repeated G
/// times), `null` the null condition of guidance (one row). Both empty for an unconditional task.
struct ConditionSource {
  std::function<Condition(int64_t groups, Rng& rng)> draw;
  Condition null;
};

struct StepRecord {
  int64_t step = 0;            // 1-based index of the step just taken
  double seconds = 0;          // cumulative wall-clock time inside step()
  double rollout_seconds = 0;  // this step's rollout: sampling and scoring (the rest is the loss)
  double comm_seconds = 0;     // this step's time in collectives (several processes; else 0)
  double reward_mean = 0, reward_std = 0, reward_min = 0, reward_max = 0;
  double loss = 0;       // mean over the minibatches
  double grad_norm = 0;  // before clipping (the largest of the minibatches')
  int64_t nfe = 0;       // cumulative network evaluations by rollouts (per sample)
  double nfe_train =
      0;  // cumulative network evaluations by the losses, per endpoint (forward
          // passes of any model, and vector-Jacobian products; the methods' "nfe_train")
  int64_t reward_evals = 0;  // cumulative reward evaluations
  std::map<std::string, double>
      metrics;  // method-specific: each the mean over the step's minibatches
  /// Non-empty when the step was skipped, saying why: the rollout diverged (a non-finite sample),
  /// the reward, the loss or the gradient was non-finite. A skipped step makes no (further)
  /// optimiser update and no EMA update, but counts as a step: the next one draws from the next
  /// random stream.
  std::string skipped;
};

/// What a training checkpoint holds besides the models' weights (Trainer::state): the optimiser's
/// moments
/// ("optimizer.m", "optimizer.v": flat, in the order of the policy's trainable parameters), the
/// method's state ("method.<its names>"), and in `meta` the step, the counters, the optimiser's and
/// the EMAs' update counts and the method's values. The random streams need nothing: step k draws
/// from Rng(seed).fork(k).
struct TrainerState {
  NamedTensors tensors;
  nlohmann::json meta = nlohmann::json::object();
};

/// Throws ConfigError if `method` differentiates the reward and `reward` is not differentiable.
void check_reward_for(const Method& method, const Reward& reward);

class Trainer {
 public:
  /// `policy` is trained in place (usually a clone of the base); `ref` is the frozen base (v_ref).
  /// `comm`: the processes of a data-parallel run (null: this one alone). Every rank must start
  /// from the same policy, reference and state.
  Trainer(VelocityFieldPtr policy, VelocityFieldPtr ref, RewardPtr reward, MethodPtr method,
          TrainerOptions options, ConditionSource conditions = {}, CommunicatorPtr comm = nullptr);
  /// Everything the constructor checks of its options against the method and the reward (and
  /// that a minibatch splits among `world_size` ranks), for callers that check a configuration
  /// before any compute. Throws ConfigError naming the culprit.
  static void check(const TrainerOptions& options, const Method& method, const Reward& reward,
                    int world_size = 1);
  /// One training step. A non-finite sample, reward, loss or gradient skips the step
  /// (StepRecord::skipped); with several minibatches, the updates made before the fault stay. Other
  /// errors propagate.
  StepRecord step();
  int64_t steps_done() const { return step_; }
  /// The cumulative counters so far (step, seconds, nfe, nfe_train, reward_evals) as a StepRecord
  /// without the per-step fields: what a resumed run that takes no further step reports.
  StepRecord totals() const;
  /// The state beyond the models' weights (see TrainerState); the models are saved by name:
  /// "policy", "old" (the EMA old policy, if any) and "ema" (the evaluation EMA, if any).
  TrainerState state() const;
  /// Restores the models' weights ("policy.*", "old.*", "ema.*" in `tensors`, as save_checkpoint
  /// names them) and state()'s tensors and meta into a trainer built with the same configuration.
  /// Afterwards step() continues exactly where the saved trainer stopped. Throws InputError naming
  /// `source` if the state does not fit (another method, a missing tensor, a shape that differs).
  void load_state(const NamedTensors& tensors, const nlohmann::json& meta,
                  const std::string& source);

  VelocityFieldImpl& policy() { return *policy_; }
  /// The model evaluations should use: the evaluation EMA when eval_ema > 0, else the policy.
  VelocityFieldImpl& eval_model() { return eval_ema_ ? eval_ema_->model() : *policy_; }
  bool has_eval_ema() const { return eval_ema_.has_value(); }
  /// "policy", or "ema D" for the evaluation EMA of decay D: what eval_model() is, for reports.
  std::string eval_model_name() const;
  VelocityFieldImpl& ref() { return *ref_; }
  /// The EMA old policy, or null if the method does not use one.
  VelocityFieldImpl* old() { return old_ ? &old_->model() : nullptr; }
  Method& method() { return *method_; }
  AdamW& optimizer() { return *optimizer_; }
  const TrainerOptions& options() const { return options_; }
  Communicator& communicator() { return *comm_; }

 private:
  /// On-policy endpoints drawn by `sampler_model` for this rank's rows, scored by the reward.
  RolloutBatch rollout(VelocityFieldImpl& sampler_model, Rng& rng);
  /// The whole step's rewards and condition ids into a rank's batch (several ranks only).
  void gather_step(RolloutBatch& batch);
  /// Every rank's fault of this phase, agreed: `skipped` becomes the first faulty rank's message
  /// (several ranks only; one collective, two when some rank failed).
  void agree(std::string& skipped);
  /// The losses and backward passes of one minibatch (its micro-batches); its gradient is this
  /// rank's part, summed over the ranks later. Returns the mean loss, its metrics and whether some
  /// loss was non-finite.
  struct MinibatchLoss {
    double loss = 0;
    std::map<std::string, double> metrics;
    bool finite = true;
  };
  MinibatchLoss minibatch_loss(const RolloutBatch& batch, int64_t i, const Policies& models,
                               Rng& rng);
  /// Sums the minibatch's gradient and its loss over the ranks (means of the metrics; maxima of
  /// those named "*max*"): every rank then holds the one-process values.
  void reduce(MinibatchLoss& out);
  /// NumericalError naming the diverged sample (index + offset) and the sampler step if x0 holds a
  /// non-finite value; x1 and cond are its noise and conditions, trajectory ([N + 1, b, ...]) its
  /// path if kept.
  void check_rollout(const torch::Tensor& x0, const torch::Tensor& x1, const Condition& cond,
                     const torch::Tensor& trajectory, const std::vector<double>& grid,
                     VelocityFieldImpl& sampler_model, int64_t offset = 0);
  VelocityFieldPtr policy_, ref_;
  RewardPtr reward_;
  MethodPtr method_;
  TrainerOptions options_;
  ConditionSource cond_;
  CommunicatorPtr comm_;
  Rows rows_;               // this rank's rows of the step's batch (all of them in one process)
  torch::Tensor gathered_;  // [B]: the step's row of each entry of an all_gather of the ranks'
  std::optional<EMA> old_;
  std::optional<EMA> eval_ema_;
  std::unique_ptr<AdamW> optimizer_;
  Rng rng_;
  int64_t step_ = 0;
  double seconds_ = 0;
  int64_t nfe_ = 0, reward_evals_ = 0;
  double nfe_train_ = 0;
};

}  // namespace ramflow
