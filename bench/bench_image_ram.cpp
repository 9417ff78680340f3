// Benchmark of the image RAM step on the fashion task's preset: the shipped base U-Net (462,689
// parameters) as policy and reference, P = 4 class groups of G = 8 endpoints from 10 Euler steps
// (no grad), the classifier reward (the shipped judge), m = 2, K = 4 draws per endpoint, AdamW lr
// 3e-5. Prints milliseconds per step (wall-clock and processor time) and where the time goes: the
// rollout and the reward timed alone with the same sizes, the loss with its backward pass and the
// AdamW update as the rest. bench/python/image_ram_step.py times the same loop in PyTorch;
// bench/image_speed_vs_python.sh runs both in alternation.
//
//   ramflow_image_bench [--steps N] [--threads N] [--json PATH] [--device D] [--lora R]
#include <chrono>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <iostream>

#include <ramflow/ramflow.h>
#include <torch/torch.h>

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

constexpr int64_t P = 4, G = 8, kRolloutSteps = 10, K = 4;
constexpr double kMultiplier = 2.0, kLr = 3e-5;

}  // namespace

int main(int argc, char** argv) {
  using namespace ramflow;
  int steps = 10, threads = 2, lora_rank = 0;
  std::string json_path, device_name = "cpu";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) {
      steps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      json_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) {
      device_name = argv[++i];
    } else if (!std::strcmp(argv[i], "--lora") && i + 1 < argc) {
      lora_rank = std::max(0, std::atoi(argv[++i]));
    } else {
      std::cerr
          << "usage: ramflow_image_bench [--steps N] [--threads N] [--json PATH] [--device D] "
             "[--lora R]\n"
             "  --steps N    steps timed (default 10, after 2 of warm-up)\n"
             "  --threads N  torch threads (default 2)\n"
             "  --lora R     train rank-R adapters instead of every weight (default 0: off)\n";
      return 2;
    }
  }
  try {
    set_threads(threads);
    const torch::Device device(device_name);
    auto base = load_checkpoint_model(resolve_model_file("fashion_base.safetensors"), "base");
    base->to(device);
    auto reward = make_reward(
        {{"type", "classifier"}, {"checkpoint", "fashion_classifier.safetensors"}}, 28 * 28);
    VelocityFieldPtr policy, ref;
    if (lora_rank > 0) {
      policy = LoraVelocityField(base, LoraOptions().rank(lora_rank).alpha(lora_rank)).ptr();
      ref = base;
    } else {
      policy = clone_velocity_field(*base);
      for (auto& p : policy->parameters()) p.set_requires_grad(true);
      ref = frozen_copy(*base);
    }
    const auto rollout = SampleOptions().steps(kRolloutSteps);
    Trainer trainer(
        policy, ref, reward, std::make_unique<RAM>(RAMOptions().multiplier(kMultiplier).draws(K)),
        TrainerOptions().sample_shape({1, 28, 28}).groups(P).group_size(G).rollout(rollout).lr(kLr),
        ConditionSource{[](int64_t groups, Rng& rng) {
                          return Condition::classes(rng.uniform_int(10, {groups}));
                        },
                        Condition::classes(torch::full({1}, kNullId, torch::kLong))});
    for (int i = 0; i < 2; ++i) trainer.step();  // warm-up
    auto t0 = Clock::now();
    double c0 = cpu_seconds();
    for (int i = 0; i < steps; ++i) trainer.step();
    const double step_ms = 1000.0 * since(t0) / steps,
                 step_cpu_ms = 1000.0 * (cpu_seconds() - c0) / steps;

    // The phases alone, same sizes: the rollout (no grad) and the reward.
    Rng rng(1);
    auto cond = Condition::classes(rng.uniform_int(10, {P})).repeat_interleave(G).to(device);
    auto x1 = rng.randn({P * G, 1, 28, 28}).to(device);
    torch::Tensor x0;
    t0 = Clock::now();
    {
      torch::NoGradGuard no_grad;
      for (int i = 0; i < steps; ++i) x0 = sample(*policy, x1, cond, rollout).x0;
    }
    const double rollout_ms = 1000.0 * since(t0) / steps;
    t0 = Clock::now();
    for (int i = 0; i < steps; ++i) score_checked(*reward, x0, cond);
    const double reward_ms = 1000.0 * since(t0) / steps;
    const double rest_ms = step_ms - rollout_ms - reward_ms;

    std::cout << "ramflow: image RAM step (fashion preset: P=" << P << " x G=" << G << ", "
              << kRolloutSteps << " Euler rollout steps, K=" << K << ", " << device_name << ", "
              << threads << " threads"
              << (lora_rank > 0 ? ", LoRA rank " + std::to_string(lora_rank) : std::string())
              << ")\n"
              << std::fixed << std::setprecision(1) << step_ms << " ms / image RAM step ("
              << step_cpu_ms << " ms processor time)\n"
              << "  rollout " << rollout_ms << " ms (" << 100 * rollout_ms / step_ms
              << "%), reward " << reward_ms << " ms (" << 100 * reward_ms / step_ms
              << "%), loss + backward + AdamW " << rest_ms << " ms (" << 100 * rest_ms / step_ms
              << "%)\n";
    if (!json_path.empty()) {
      const nlohmann::json j = {{"device", device_name},
                                {"threads", threads},
                                {"lora_rank", lora_rank},
                                {"step_ms", step_ms},
                                {"step_cpu_ms", step_cpu_ms},
                                {"rollout_ms", rollout_ms},
                                {"reward_ms", reward_ms},
                                {"loss_update_ms", rest_ms},
                                {"trainable_parameters", parameter_count(*policy)}};
      write_file_atomic(json_path, j.dump(2) + "\n");
    }
  } catch (const std::exception& e) {
    std::cerr << "ramflow_image_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
