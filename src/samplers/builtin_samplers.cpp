// The list of built-in samplers (one line each) and the shared integration loop.
#include <torch/torch.h>

#include "ramflow/sampler.h"
#include "ramflow/sde.h"
#include "ramflow/time.h"

namespace ramflow {
namespace {

void register_builtin_samplers(Registry<SamplerInfo>& r) {
  r.add("euler", {euler_step, 1, false}, "Euler ODE, first order, 1 evaluation per step");
  r.add("heun", {heun_step, 2, false}, "Heun ODE, second order, 2 evaluations per step");
  r.add("dpm2", {dpm2_step, 2, false},
        "DPM-Solver-2 (2S, data prediction), second order, 2 evaluations per step");
  r.add("sde", {flow_grpo_sde_step, 1, true},
        "Flow-GRPO's SDE with noise level a = 0.7 (same marginals)");
  r.add("memoryless", {memoryless_sde_step, 1, true},
        "the memoryless SDE (a = sqrt 2): endpoint independent of the starting noise");
}

}  // namespace

const Registry<SamplerInfo>& samplers() {
  static const Registry<SamplerInfo> registry = [] {
    Registry<SamplerInfo> r("sampler");
    register_builtin_samplers(r);
    return r;
  }();
  return registry;
}

std::vector<double> sampling_grid(const SampleOptions& options) {
  if (options.grid() == "uniform") return time_grid(options.steps(), options.shift());
  if (options.grid() == "diffusers") return diffusers_grid(options.steps(), options.shift());
  throw ConfigError("sampling grid: unknown grid '" + options.grid() + "' (uniform, diffusers)");
}

SampleResult sample(const VelocityFn& v, const torch::Tensor& x1, const SampleOptions& options,
                    Rng* rng, const Rows& rows) {
  const SamplerInfo& info = samplers().get(options.sampler());
  TORCH_CHECK(!info.stochastic || rng != nullptr, "sample: sampler '", options.sampler(),
              "' is stochastic and needs an Rng");
  const auto grid = sampling_grid(options);
  SampleResult out;
  VelocityFn counted = [&](const torch::Tensor& x, const torch::Tensor& t) {
    ++out.nfe;
    return v(x, t);
  };
  torch::Tensor x = x1;
  {
    // Inference mode: like no_grad, and also skips version counters and autograd metadata.
    c10::InferenceMode inference;
    torch::Tensor none;
    for (size_t k = 0; k + 1 < grid.size(); ++k) {
      torch::Tensor noise = info.stochastic ? rows.randn(*rng, x.sizes(), x.options()) : none;
      x = info.step(counted, x, grid[k], grid[k + 1], noise);
    }
  }
  // A functional op outside inference mode turns the result into an ordinary tensor, which later
  // autograd code (the method's loss) may save for backward.
  out.x0 = x.clone();
  return out;
}

int64_t first_nonfinite_step(const VelocityFn& v, const torch::Tensor& x1,
                             const SampleOptions& options) {
  const SamplerInfo& info = samplers().get(options.sampler());
  if (info.stochastic) return -1;
  const auto grid = sampling_grid(options);
  c10::InferenceMode inference;
  torch::Tensor x = x1, none;
  for (size_t k = 0; k + 1 < grid.size(); ++k) {
    x = info.step(v, x, grid[k], grid[k + 1], none);
    if (!torch::isfinite(x).all().item<bool>()) return static_cast<int64_t>(k + 1);
  }
  return -1;
}

SampleResult sample(VelocityFieldImpl& model, const torch::Tensor& x1, const Condition& cond,
                    const SampleOptions& options, Rng* rng, const Rows& rows) {
  return sample(
      [&](const torch::Tensor& x, const torch::Tensor& t) { return model.forward(x, t, cond); }, x1,
      options, rng, rows);
}

}  // namespace ramflow
