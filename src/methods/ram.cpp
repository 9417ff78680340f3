// Reinforce Adjoint Matching (see include/ramflow/ram.h for the equations and sources).
#include "ramflow/ram.h"

#include <torch/torch.h>

#include "ramflow/advantage.h"
#include "ramflow/conventions.h"
#include "ramflow/errors.h"
#include "ramflow/renoise.h"

namespace ramflow {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The RAM regression as one autograd node, for v, v_ref, u and v_copy of shape [B*K, n] and the
// per-endpoint signal s [B] (each endpoint's K draws are consecutive rows):
//   res  = v - (v_ref + s_b (u - v_copy))        (the target is under stop-gradient)
//   loss = mean res^2,    dloss/dv = 2 res / numel(v)
// and, in the same pass, drift = mean (v - v_ref)^2 (a metric). One loop instead of the several
// operators of the composed expression and their backward nodes; equal to it up to summation order
// (sums in double here). CPU float32 only: the caller checks `applies`.
struct RAMRegression : public torch::autograd::Function<RAMRegression> {
  static bool applies(const torch::Tensor& v, const torch::Tensor& v_ref, const torch::Tensor& u,
                      const torch::Tensor& v_copy, const torch::Tensor& s) {
    for (const auto* t : {&v, &v_ref, &u, &v_copy, &s})
      if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat || !t->is_contiguous())
        return false;
    return !v_ref.requires_grad() && !u.requires_grad() && !v_copy.requires_grad() &&
           !s.requires_grad();
  }

  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& v,
                               const torch::Tensor& v_ref, const torch::Tensor& u,
                               const torch::Tensor& v_copy, const torch::Tensor& s, double* drift) {
    const int64_t N = v.numel(), B = s.numel(), per = N / B;  // per = K n values per endpoint
    TORCH_CHECK(B > 0 && N % B == 0 && v_ref.numel() == N && u.numel() == N && v_copy.numel() == N,
                "ram: v ", v.sizes(), ", v_ref ", v_ref.sizes(), ", u ", u.sizes(), ", v_copy ",
                v_copy.sizes(), " and signal ", s.sizes(), " do not match");
    auto res = torch::empty_like(v);
    const float *vp = v.data_ptr<float>(), *rp = v_ref.data_ptr<float>(), *up = u.data_ptr<float>(),
                *cp = v_copy.data_ptr<float>(), *sp = s.data_ptr<float>();
    float* out = res.data_ptr<float>();
    double sq = 0, drift_sq = 0;
    for (int64_t b = 0; b < B; ++b) {
      const float sb = sp[b];
      for (int64_t i = b * per; i < (b + 1) * per; ++i) {
        const float r = vp[i] - (rp[i] + sb * (up[i] - cp[i]));
        const float d = vp[i] - rp[i];
        out[i] = r;
        sq += static_cast<double>(r) * r;
        drift_sq += static_cast<double>(d) * d;
      }
    }
    *drift = drift_sq / static_cast<double>(N);
    ctx->save_for_backward({res});
    return torch::scalar_tensor(sq / static_cast<double>(N), v.options().requires_grad(false));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const auto res = ctx->get_saved_variables()[0];
    // dloss/dv = 2 res / N, times the incoming scalar gradient.
    return {res * (grad_out[0] * (2.0 / static_cast<double>(res.numel()))), {}, {}, {}, {}, {}};
  }
};

}  // namespace

void RAMOptions::validate() const {
  if (draws_ < 1) throw ConfigError("ram: draws must be >= 1");
  if (signal_ != "raw" && signal_ != "centered" && signal_ != "normalized")
    throw ConfigError("ram: signal must be raw, centered or normalized, got '" + signal_ + "'");
  if (std_scope_ != "group" && std_scope_ != "step")
    throw ConfigError("ram: std_scope must be group or step, got '" + std_scope_ + "'");
  if (target_copy_ != "current" && target_copy_ != "ema")
    throw ConfigError("ram: target_copy must be current or ema, got '" + target_copy_ + "'");
  if (!(std_eps_ > 0)) throw ConfigError("ram: std_eps must be > 0");
  time_.validate();
}

nlohmann::json RAMOptions::to_json() const {
  return {{"multiplier", multiplier_}, {"draws", draws_},           {"signal", signal_},
          {"std_scope", std_scope_},   {"std_eps", std_eps_},       {"target_copy", target_copy_},
          {"time_dist", time_.kind},   {"time_alpha", time_.alpha}, {"time_mean", time_.mean},
          {"time_std", time_.std}};
}

RAM::RAM(RAMOptions options) : options_(std::move(options)) { options_.validate(); }

torch::Tensor RAM::signal(const RolloutBatch& batch) const {
  const double m = options_.multiplier();
  // Group and step statistics over the whole step's rewards; this batch's rows of them.
  const auto& r = batch.step_rewards();
  if (options_.signal() == "raw") return m * batch.reward;
  if (options_.signal() == "centered") return m * batch.own(group_centered(r, batch.group_size));
  return m * batch.own(normalized_advantage(r, batch.group_size, options_.std_scope(),
                                            options_.std_eps()));
}

void RAM::prepare(RolloutBatch& batch, const Policies&, Rng&) {
  batch.extras["signal"] = signal(batch);
}

LossOutput RAM::loss(const RolloutBatch& batch, const Policies& models, Rng& rng) {
  const int64_t B = batch.x0.size(0), K = options_.draws();
  TORCH_CHECK(batch.reward.dim() == 1 && batch.reward.size(0) == B, "ram: reward has shape ",
              batch.reward.sizes(), ", expected [", B, "]");
  TORCH_CHECK(!uses_old_policy() || models.old != nullptr,
              "ram: target_copy 'ema' needs the old policy");
  const auto opts = batch.x0.options();

  const auto it = batch.extras.find("signal");
  const auto signal_b = (it != batch.extras.end() ? it->second : signal(batch)).to(opts);  // [B]
  // K draws per endpoint, all in one batched forward pass.
  const Renoised p = renoise(batch.x0, batch.cond, K, options_.time(), rng, batch.rows);  // [B*K]
  const auto &x_t = p.x_t, &t = p.t;
  const Condition& cond = p.cond;
  auto u = velocity_target(p.x0, p.eps);  // eps - x0

  torch::Tensor v_ref, v_old;
  {
    torch::NoGradGuard no_grad;
    v_ref = models.ref.forward(x_t, t, cond);
    if (uses_old_policy()) v_old = models.old->forward(x_t, t, cond);
  }
  auto v = models.policy.forward(x_t, t, cond);  // the only graph
  if (!uses_old_policy()) v_old = v.detach();

  // target = sg(v_ref + s (u - v_copy));  loss = mean (v - target)^2. The signal of endpoint b
  // multiplies its K draws.
  LossOutput out;
  double drift = 0;
  if (RAMRegression::applies(v, v_ref, u, v_old, signal_b)) {
    out.loss = RAMRegression::apply(v, v_ref, u, v_old, signal_b, &drift);
  } else {  // the same with LibTorch operators: viewed as [B, K, n], s broadcasts from [B, 1, 1]
    auto target = torch::addcmul(v_ref.view({B, K, -1}), signal_b.view({B, 1, 1}),
                                 (u - v_old).view({B, K, -1}))
                      .view(v.sizes());
    out.loss = torch::mse_loss(v, target);
    torch::NoGradGuard no_grad;
    drift = torch::mse_loss(v.detach(), v_ref).item<double>();
  }
  out.metrics["signal_mean"] = signal_b.mean().item<double>();
  out.metrics["nfe_train"] =
      static_cast<double>(K * (uses_old_policy() ? 3 : 2));  // policy, ref (, old)
  out.metrics["drift_from_ref"] = drift;
  return out;
}

void RAM::add_params(ParamTable& t) {
  t.group("RAM (method ram; uses --multiplier, --draws and the time_* keys)");
  t.text("ram_signal", "raw",
         "reward signal: raw = m r (paper), centered = m (r - group mean), "
         "normalized = m (r - mean) / std (released code)",
         {"raw", "centered", "normalized"});
  t.text("ram_std_scope", "group", "std of the normalized signal: per group or over the step",
         {"group", "step"});
  t.number("ram_std_eps", 1e-4, "added to the std of the normalized signal", 0, 1, true);
  t.text("ram_target_copy", "current",
         "stopped copy in the target: current policy (paper) or an EMA old policy that also draws "
         "the rollouts (released code; see old_decay, old_ramp)",
         {"current", "ema"});
  // The names of earlier versions, before every method's keys carried its prefix.
  for (const char* key : {"signal", "std_scope", "std_eps", "target_copy"})
    t.renamed(key, std::string("ram_") + key);
}

MethodPtr RAM::from_config(const Config& cfg) {
  const TimeDistribution time = time_distribution_from(cfg);
  return std::make_unique<RAM>(RAMOptions()
                                   .multiplier(cfg.number("multiplier"))
                                   .draws(cfg.integer("draws"))
                                   .signal(cfg.text("ram_signal"))
                                   .std_scope(cfg.text("ram_std_scope"))
                                   .std_eps(cfg.number("ram_std_eps"))
                                   .target_copy(cfg.text("ram_target_copy"))
                                   .time(time));
}

}  // namespace ramflow
