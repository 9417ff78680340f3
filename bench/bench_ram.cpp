// Benchmarks for the RAM loop on the ring configuration of the default job (G = 32, K = 4, 25 Euler
// rollout steps, the 35,714-parameter MLP): milliseconds per RAM step with one thread and with all
// threads, rollout samples per second, and pretraining steps per second. Prints a table and, with
// --json PATH, writes the numbers as JSON. bench/python/ram_step.py times the same loop in PyTorch;
// bench/speed_vs_python.sh runs both in alternation and prints the ratio.
#include <chrono>
#include <ctime>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <thread>

#include <ramflow/ramflow.h>
#include <torch/torch.h>

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
// Processor time of the whole process: unlike wall-clock time it excludes time stolen by other virtual
// machines on a shared host, which makes one-thread numbers comparable across runs.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

struct Numbers {
  int threads;
  double ram_step_ms, ram_step_cpu_ms, rollout_samples_per_s, pretrain_steps_per_s;
};

struct Settings {
  int ram_steps = 300, pretrain_steps = 1000;
  bool ram_only = false;  // skip the rollout and pretraining numbers
  bool fused = true;      // MLPVelocity::set_fused
  std::string device = "cpu";
};

void set_fused(ramflow::VelocityFieldImpl& model, bool fused) {
  if (auto* mlp = dynamic_cast<ramflow::MLPVelocityImpl*>(&model)) mlp->set_fused(fused);
}

Numbers measure(int threads, const Settings& s) {
  using namespace ramflow;
  torch::set_num_threads(threads);
  auto task = make_task("ring");
  const torch::Device device(s.device);
  auto base = make_velocity_field(task->default_model());
  base->to(device);
  set_fused(*base, s.fused);
  DataSampler data = [&](int64_t n, Rng& rng, torch::Tensor*) { return task->sample_data(n, rng).to(device); };
  double pretrain_s = 0;
  if (!s.ram_only) {
    pretrain_flow_matching(*base, data, PretrainOptions().steps(50));  // warm-up
    auto t0 = Clock::now();
    pretrain_flow_matching(*base, data, PretrainOptions().steps(s.pretrain_steps));
    pretrain_s = since(t0);
  }

  auto reward = make_reward({{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}}, 2);
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  auto ref = frozen_copy(*base);
  set_fused(*policy, s.fused);
  set_fused(*ref, s.fused);
  Trainer trainer(policy, ref, reward, std::make_unique<RAM>(RAMOptions().multiplier(5.0).draws(4)),
                  TrainerOptions().sample_shape({2}).group_size(32).rollout(SampleOptions().steps(25)).lr(1e-4));
  for (int i = 0; i < 20; ++i) trainer.step();  // warm-up
  auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  for (int i = 0; i < s.ram_steps; ++i) trainer.step();
  const double ram_s = since(t0), ram_cpu_s = cpu_seconds() - c0;
  const double ms = 1000.0 / s.ram_steps;
  if (s.ram_only) return {threads, ram_s * ms, ram_cpu_s * ms, 0, 0};

  Rng rng(0);
  auto x1 = rng.randn({4096, 2}).to(device);
  sample(*base, x1, {}, SampleOptions().steps(25));  // warm-up
  t0 = Clock::now();
  const int reps = 5;
  torch::Tensor x0;
  for (int i = 0; i < reps; ++i) x0 = sample(*base, x1, {}, SampleOptions().steps(25)).x0;
  x0.sum().item<double>();  // waits for an asynchronous device
  const double rollout_s = since(t0);
  return {threads, ram_s * ms, ram_cpu_s * ms, reps * 4096.0 / rollout_s, s.pretrain_steps / pretrain_s};
}

}  // namespace

int main(int argc, char** argv) {
  ramflow::keep_freed_memory();  // as the ramflow CLI does
  std::string json_path;
  Settings s;
  int threads = 0;  // 0: one thread, then all threads
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      json_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) {
      s.ram_steps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--ram-only")) {
      s.ram_only = true;
    } else if (!std::strcmp(argv[i], "--unfused")) {
      s.fused = false;
    } else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) {
      s.device = argv[++i];
    } else {
      std::cerr << "usage: ramflow_bench [--json PATH] [--steps N] [--threads N] [--ram-only] [--unfused] [--device D]\n"
                   "  --steps N    RAM steps timed (default 300)\n"
                   "  --threads N  only this thread count (default: 1, then all)\n"
                   "  --ram-only   only the RAM step (no rollout or pretraining numbers)\n"
                   "  --unfused    LibTorch operators instead of the fused MLP kernels\n"
                   "  --device D   cpu (default), cuda or cuda:N (the fused kernels are CPU-only)\n";
      return 2;
    }
  }
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<Numbers> rows;
  try {
    if (torch::Device(s.device).is_cuda() && !torch::cuda::is_available())
      throw std::runtime_error("--device " + s.device + ": CUDA is not available in this build or on this machine");
    if (threads > 0) {
      rows.push_back(measure(threads, s));
    } else {
      rows.push_back(measure(1, s));
      if (all > 1) rows.push_back(measure(all, s));
    }
  } catch (const c10::Error& e) {
    std::cerr << "ramflow_bench: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ramflow_bench: " << e.what() << "\n";
    return 1;
  }
  std::cout << "RAM on the ring (G=32, K=4, 25 Euler rollout steps, MLP 35,714 parameters, " << s.device
            << ", " << (s.fused && s.device == "cpu" ? "fused kernels" : "LibTorch operators") << ")\n"
            << std::left << std::setw(9) << "threads" << std::setw(16) << "ms / RAM step" << std::setw(24)
            << "rollout samples / s" << "pretrain steps / s (batch 256)\n";
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : rows) {
    std::cout << std::setw(9) << r.threads << std::setw(16) << std::fixed << std::setprecision(3) << r.ram_step_ms
              << std::setw(24) << std::setprecision(0) << r.rollout_samples_per_s << std::setprecision(1)
              << r.pretrain_steps_per_s << "\n";
    out.push_back({{"threads", r.threads},
                   {"ram_step_ms", r.ram_step_ms},
                   {"ram_step_cpu_ms", r.ram_step_cpu_ms},
                   {"rollout_samples_per_s", r.rollout_samples_per_s},
                   {"pretrain_steps_per_s", r.pretrain_steps_per_s}});
  }
  if (!json_path.empty())
    ramflow::write_json_atomic(json_path, {{"torch", TORCH_VERSION}, {"device", s.device}, {"fused", s.fused}, {"results", out}});
  return 0;
}
