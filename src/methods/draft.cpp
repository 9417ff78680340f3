// DRaFT-K (see include/ramflow/draft.h for the equations and sources).
#include "ramflow/draft.h"

#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/reward.h"

namespace ramflow {

void DRaFTOptions::validate() const {
  if (k_ < 1) throw ConfigError("draft: k must be >= 1");
}

DRaFT::DRaFT(DRaFTOptions options) : options_(std::move(options)) { options_.validate(); }

RolloutSpec DRaFT::rollout_spec() const {
  RolloutSpec spec;
  spec.trajectory = true;  // Euler ODE, path kept
  return spec;
}

LossOutput DRaFT::loss(const RolloutBatch& batch, const Policies& models, Rng&) {
  TORCH_CHECK(batch.trajectory.defined(), "draft: the batch has no trajectory");
  TORCH_CHECK(models.reward != nullptr, "draft: needs the reward");
  const int64_t N = static_cast<int64_t>(batch.grid.size()) - 1, B = batch.size();
  const int64_t K = std::min(options_.k(), N);
  auto x = batch.trajectory[N - K].detach();  // [B, ...], no grad
  for (int64_t k = N - K; k < N; ++k) {
    const double t = batch.grid[k], dt = batch.grid[k + 1] - t;
    // x <- x + dt v(x, t), the Euler step of the rollout
    x = torch::add(x, models.policy.forward(x, torch::full({B}, t, x.options()), batch.cond), dt);
  }
  auto r = models.reward->score(x, batch.cond);  // [B], differentiable
  LossOutput out;
  out.loss = -r.mean();
  out.metrics["rerun_reward"] = r.detach().mean().item<double>();
  out.metrics["nfe_train"] = static_cast<double>(K);
  return out;
}

void DRaFT::add_params(ParamTable& t) {
  t.group("DRaFT (method draft; needs a differentiable reward)");
  t.integer("draft_k", 1, "K: the last K Euler steps are back-propagated through", 1, 100000);
}

MethodPtr DRaFT::from_config(const Config& cfg) {
  return std::make_unique<DRaFT>(DRaFTOptions().k(cfg.integer("draft_k")));
}

}  // namespace ramflow
