#pragma once
// The method boundary. A method never runs its own loop: the shared Trainer draws the rollouts,
// scores them, and hands the batch to Method::loss; the method returns a differentiable loss.
// Method-specific shaping stays in the method's file; pure shared helpers live in advantage.h.
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "ramflow/config.h"
#include "ramflow/registry.h"
#include "ramflow/rng.h"
#include "ramflow/rows.h"
#include "ramflow/time.h"
#include "ramflow/velocity_field.h"

namespace ramflow {

/// What the trainer's rollout must produce for a method (Method::rollout_spec).
struct RolloutSpec {
  /// Noise level a of the SDE of sde.h on the stochastic steps. With a > 0 the rollout keeps its
  /// trajectory and the per-step log-densities; with 0 it runs the configured ODE sampler.
  double noise_level = 0.0;
  /// Flow-GRPO's window variant: only `window` consecutive steps are stochastic, starting at a step
  /// drawn uniformly from [0, window_end * N - window]; 0 = every step is stochastic.
  int64_t window = 0;
  double window_end = 0.5;
  std::string log_prob_reduce = "mean";  // "mean" (Flow-GRPO's code) or "sum" over coordinates
  bool trajectory = false;  // keep x at every grid time (Euler steps where not stochastic)
  /// With --cfg != 1, a trajectory method's rollouts and loss use the guided velocity v_u + w (v_c
  /// - v_u) of each model (its log-probabilities are those of the guided sampler, as in Flow-GRPO's
  /// released code); a trajectory method without it refuses guidance.
  bool guided_loss = false;
  bool reward_gradient = false;  // grad_x r(x0) in the batch; the reward must be differentiable
};

/// One step's on-policy data. B = groups * group_size; sample i belongs to group i / group_size.
/// In a data-parallel step (docs/distributed.md) a process's batch holds some rows of the step's
/// batch (`rows`), and the whole step's rewards and condition ids, over which group and step
/// statistics are taken (step_rewards(), own()).
struct RolloutBatch {
  torch::Tensor x0;      // [B, ...] clean endpoints, no grad
  Condition cond;        // the B samples' conditions, or empty
  torch::Tensor reward;  // [B] float32, finite
  std::map<std::string, torch::Tensor>
      reward_terms;  // the reward's named parts, each [B] (reward.h)
  int64_t groups = 1;
  int64_t group_size = 0;
  std::vector<double> grid;  // the rollout's time grid t_0 = 1 > ... > t_N = 0
  // --- only when the RolloutSpec asked for them ---
  torch::Tensor trajectory;  // [N + 1, B, ...]: x at grid[k]; [0] the noise, [N] = x0
  torch::Tensor log_prob;  // [N, B] log-density of each step under the rollout policy (0: ODE step)
  std::vector<int64_t> sde_steps;  // the stochastic steps k (t_k -> t_k+1)
  torch::Tensor reward_grad;       // [B, ...] grad_x r at x0
  /// Per-sample tensors [B, ...] that Method::prepare computed from the whole batch (advantages,
  /// ...).
  std::map<std::string, torch::Tensor> extras;
  /// Which rows of the step's batch (of groups * group_size) this batch holds: all of them in one
  /// process. The random draws of prepare and loss are made for those rows (rows.h).
  Rows rows;
  /// The whole step's rewards [groups * group_size] and condition ids (undefined without
  /// conditions) when this batch holds only some rows; undefined otherwise.
  torch::Tensor step_reward, step_id;

  int64_t size() const { return x0.size(0); }
  /// The rewards of the whole step: group and step statistics are taken over these.
  const torch::Tensor& step_rewards() const { return step_reward.defined() ? step_reward : reward; }
  /// This batch's rows of a per-sample tensor of the whole step ([groups * group_size, ...]).
  torch::Tensor own(const torch::Tensor& per_step) const {
    return step_reward.defined() ? rows.take(per_step) : per_step;
  }
  /// Samples [begin, end) of every per-sample tensor, and of `rows`. Group statistics belong in
  /// Method::prepare, which sees the whole batch: a slice may cut a group (and has no step_reward).
  RolloutBatch slice(int64_t begin, int64_t end) const;
};

class Reward;

/// The models a loss may use. Only `policy` is trainable.
struct Policies {
  VelocityFieldImpl& policy;         // v_theta
  VelocityFieldImpl& ref;            // v_ref, frozen
  VelocityFieldImpl* old = nullptr;  // EMA "old" policy, when the method asked for it
  const Reward* reward = nullptr;    // for methods that differentiate the reward (DRaFT)
};

struct LossOutput {
  torch::Tensor loss;  // scalar, differentiable in the policy's parameters
  /// Logged per step. By convention "nfe_train" is the network evaluations the loss (and prepare)
  /// spent per endpoint of the batch: forward passes of any model and vector-Jacobian products.
  std::map<std::string, double> metrics;
};

/// A method's own state beyond its options, for checkpoints that resume bit for bit (ram-anneal's
/// stage and frozen reference, ram-tilt's running normaliser). Tensor names are the method's own.
struct MethodState {
  nlohmann::json values = nlohmann::json::object();
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  /// True if rollouts and the stopped copy come from an EMA "old" policy instead of the current
  /// one.
  virtual bool uses_old_policy() const { return false; }
  /// True if that EMA old policy also draws the rollouts (false: it only serves the loss, e.g.
  /// AWM's trust region, and the current policy draws them).
  virtual bool rollouts_from_old() const { return uses_old_policy(); }
  virtual RolloutSpec rollout_spec() const { return {}; }
  /// Called at the start of trainer step `step` (0-based), before its rollout. A method with a
  /// schedule of its own (ram-anneal's and ram-tilt's stages) derives it from `step` here: no
  /// hidden counters.
  virtual void begin_step(int64_t /*step*/, const Policies& /*models*/) {}
  /// The model that draws this step's rollouts when the method chooses it (ram-tilt's frozen stage
  /// model); null leaves the choice to the trainer (the EMA old policy or the current policy).
  virtual VelocityFieldImpl* rollout_model(const Policies& /*models*/) { return nullptr; }
  /// True if the loss differentiates the reward (the trainer then refuses a non-differentiable
  /// one).
  virtual bool needs_reward_gradient() const { return rollout_spec().reward_gradient; }
  /// Called once per rollout, before the optimiser updates on it (no grad): statistics over the
  /// whole batch, such as group advantages, and draws that every minibatch must share (the ELBO's
  /// (t, eps)) go into batch.extras. `rng` is the step's stream, the one loss() then draws from.
  virtual void prepare(RolloutBatch& /*batch*/, const Policies& /*models*/, Rng& /*rng*/) {}
  /// The loss on a batch or a slice of one (TrainerOptions::minibatches). It is a mean over the
  /// batch's rows: the trainer averages the gradients of the ranks' and micro-batches' equal
  /// shares into the whole minibatch's (docs/distributed.md), so a statistic over the rows belongs
  /// in prepare(), which sees the step's rewards. Its random draws are made for batch.rows.
  virtual LossOutput loss(const RolloutBatch& batch, const Policies& models, Rng& rng) = 0;
  /// The method's resolved options (written into checkpoints and summaries).
  virtual nlohmann::json options() const = 0;
  /// What begin_step, prepare and loss have accumulated (stateless methods: nothing).
  virtual MethodState state() const { return {}; }
  /// Restores state() into a method made from the same options; `models` are the trainer's, already
  /// restored. Throws InputError if the state is not one this method wrote.
  virtual void load_state(const MethodState& /*state*/, const Policies& /*models*/) {}
};
using MethodPtr = std::unique_ptr<Method>;

/// A registered method: the config keys it owns, and a factory from a resolved config.
struct MethodInfo {
  std::function<void(ParamTable&)> add_params;
  std::function<MethodPtr(const Config&)> make;
  /// The method's own defaults for shared keys (lr, minibatches, old_decay, ...): applied by
  /// Config::apply_defaults, so keys the user sets win.
  nlohmann::json preset = nlohmann::json::object();
};
const Registry<MethodInfo>& methods();

/// Every method's config keys: the shared forward-process keys (draws, time_*), then each method's.
void add_method_params(ParamTable& table);
/// The config keys `method` reads (its own, the shared ones it uses, multiplier), found by building
/// it from the defaults of `table`.
std::set<std::string> method_keys(const std::string& method, const ParamTable& table);
/// The registered methods that read `key` (method_keys), in registration order: the lists of help
/// texts and reports come from here, not from hand-kept strings.
std::vector<std::string> methods_reading(const std::string& key, const ParamTable& table);
/// The registered methods, each built from its defaults, for which `pred` holds, in registration
/// order.
std::vector<std::string> methods_where(const std::function<bool(const Method&)>& pred);
/// A method owns its options: throws ConfigError if `cfg` sets (to a value other than the default)
/// a key that some registered method reads and none of `chosen` does, naming the key and its
/// methods. `multiplier` is exempt: it also fixes the evaluation's exact target.
void check_method_keys(const Config& cfg, const std::vector<std::string>& chosen);
/// The training-time distribution of the time_* keys.
TimeDistribution time_distribution_from(const Config& cfg);

}  // namespace ramflow
