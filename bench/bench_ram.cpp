// Benchmarks for the RAM loop on the ring configuration of the default job (G = 32, K = 4, 25 Euler
// rollout steps, the 35,714-parameter MLP): milliseconds per RAM step with one thread and with all
// threads, rollout samples per second, and pretraining steps per second; then the step's
// multiply-adds and how many per second it reached against one core's float32 multiply-add peak
// (measured here). Prints a table and, with --json PATH, writes the numbers as JSON.
// bench/python/ram_step.py times the same loop in PyTorch; bench/speed_vs_python.sh runs both in
// alternation and prints the ratio.
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <thread>

#include <ramflow/ramflow.h>
#include <torch/torch.h>

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
// Processor time of the whole process: unlike wall-clock time it excludes time stolen by other
// virtual machines on a shared host, which makes one-thread numbers comparable across runs.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// Multiply-adds of one RAM step of `measure`: the rollout runs the network G * steps times on one
// row each; the loss runs the policy and the reference forward on G K rows and the policy backward
// (the weight gradients of every layer, the input gradients of every layer but the first).
double ram_step_macs(ramflow::VelocityFieldImpl& model, int64_t G, int64_t K, int64_t steps) {
  double per_row = 0, first = -1;
  for (const auto& p : model.parameters())
    if (p.dim() == 2) {
      per_row += static_cast<double>(p.numel());
      if (first < 0) first = static_cast<double>(p.numel());
    }
  return static_cast<double>(G * steps) * per_row +
         static_cast<double>(G * K) * (4 * per_row - first);
}

// One core's float32 multiply-add peak, in G per second: 16 independent chains of vector FMAs
// (enough to cover the FMA latency on two units), as wide as the processor allows.
template <int W>
struct Lanes {
  typedef float V __attribute__((vector_size(4 * W)));
};
// The operands come from volatile variables (constants would let the compiler evaluate the loop
// itself) and the result goes to one; the accumulators live only between the two clock reads (a
// call clobbers every vector register, and values held across one would be kept in memory).
template <int W>
inline __attribute__((always_inline)) double fma_peak_impl() {
  using V = typename Lanes<W>::V;
  const long n = 20000000;
  volatile float scale = 0.9999999f, shift = 1e-7f, start = 1.0f, result = 0;
  const auto t0 = Clock::now();
  {
    const V b = V{} + scale, c = V{} + shift;  // (a scalar operand broadcasts to every lane)
    V acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = V{} + (start + static_cast<float>(i) * shift);
    for (long r = 0; r < n; ++r)
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) acc[i] = acc[i] * b + c;
    V sum = {};
    for (int i = 0; i < 16; ++i) sum += acc[i];
    result = sum[0];
  }
  const double s = since(t0);
  (void)result;
  return static_cast<double>(n) * 16 * W / s / 1e9;
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,fma"))) double fma_peak_avx512() { return fma_peak_impl<16>(); }
__attribute__((target("avx2,fma"))) double fma_peak_avx2() { return fma_peak_impl<8>(); }
#endif
std::pair<double, std::string> fma_peak() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx512f")) return {fma_peak_avx512(), "AVX-512"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {fma_peak_avx2(), "AVX2 + FMA"};
#endif
  return {fma_peak_impl<4>(), "128-bit vectors"};
}

struct Numbers {
  int threads;
  double ram_step_ms, ram_step_cpu_ms, rollout_samples_per_s, pretrain_steps_per_s, macs,
      network_ms;
};

// Milliseconds of the network's own share of one RAM step, timed on its own through the public API:
// the rollout's 25 forward passes at batch G = 32 without gradients, the reference's forward at
// batch G K = 128 without, and the policy's forward at batch 128 with its backward. The rest of the
// step (sampler, re-noising, reward, loss, optimiser, autograd bookkeeping) is the step's time less
// this. CPU only (NaN elsewhere: the fused kernels are CPU kernels, and a device's asynchronous
// calls would need synchronising).
double network_ms(ramflow::VelocityFieldImpl& policy, torch::Device device) {
  if (!device.is_cpu()) return std::numeric_limits<double>::quiet_NaN();
  ramflow::Rng rng(1);
  const auto x32 = rng.randn({32, 2}).to(device), t32 = torch::full({32}, 0.5f).to(device);
  const auto x128 = rng.randn({128, 2}).to(device), t128 = rng.rand({128}).to(device);
  const auto g128 = rng.randn({128, 2}).to(device);
  auto time_ms = [](int reps, const std::function<void()>& f) {
    for (int i = 0; i < reps / 10; ++i) f();  // warm-up
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) f();
    return since(t0) * 1000.0 / reps;
  };
  double ms = 0;
  {
    torch::NoGradGuard no_grad;
    ms += 25 * time_ms(4000, [&] { policy.forward(x32, t32, {}); });
    ms += time_ms(1000, [&] { policy.forward(x128, t128, {}); });
  }
  ms += time_ms(1000, [&] {
    auto v = policy.forward(x128, t128, {});
    v.backward(g128);  // dLoss/dv = g: the fused backward
  });
  for (auto& p : policy.parameters()) p.mutable_grad() = torch::Tensor();
  return ms;
}

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
  DataSampler data = [&](int64_t n, Rng& rng, Condition*) {
    return task->sample_data(n, rng).to(device);
  };
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
                  TrainerOptions()
                      .sample_shape({2})
                      .group_size(32)
                      .rollout(SampleOptions().steps(25))
                      .lr(1e-4));
  for (int i = 0; i < 20; ++i) trainer.step();  // warm-up
  auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  for (int i = 0; i < s.ram_steps; ++i) trainer.step();
  const double ram_s = since(t0), ram_cpu_s = cpu_seconds() - c0;
  const double ms = 1000.0 / s.ram_steps;
  const double macs = ram_step_macs(*policy, 32, 4, 25), net_ms = network_ms(*policy, device);
  if (s.ram_only) return {threads, ram_s * ms, ram_cpu_s * ms, 0, 0, macs, net_ms};

  Rng rng(0);
  auto x1 = rng.randn({4096, 2}).to(device);
  sample(*base, x1, {}, SampleOptions().steps(25));  // warm-up
  t0 = Clock::now();
  const int reps = 5;
  torch::Tensor x0;
  for (int i = 0; i < reps; ++i) x0 = sample(*base, x1, {}, SampleOptions().steps(25)).x0;
  x0.sum().item<double>();  // waits for an asynchronous device
  const double rollout_s = since(t0);
  return {
      threads, ram_s * ms, ram_cpu_s * ms, reps * 4096.0 / rollout_s, s.pretrain_steps / pretrain_s,
      macs,    net_ms};
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
      std::cerr
          << "usage: ramflow_bench [--json PATH] [--steps N] [--threads N] [--ram-only] "
             "[--unfused] [--device D]\n"
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
      throw std::runtime_error("--device " + s.device +
                               ": CUDA is not available in this build or on this machine");
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
  std::cout << "RAM on the ring (G=32, K=4, 25 Euler rollout steps, MLP 35,714 parameters, "
            << s.device << ", "
            << (s.fused && s.device == "cpu" ? "fused kernels" : "LibTorch operators") << ")\n"
            << std::left << std::setw(9) << "threads" << std::setw(16) << "ms / RAM step"
            << std::setw(24) << "rollout samples / s"
            << "pretrain steps / s (batch 256)\n";
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : rows) {  // (network_ms: null off the CPU)
    std::cout << std::setw(9) << r.threads << std::setw(16) << std::fixed << std::setprecision(3)
              << r.ram_step_ms << std::setw(24) << std::setprecision(0) << r.rollout_samples_per_s
              << std::setprecision(1) << r.pretrain_steps_per_s << "\n";
    out.push_back({{"threads", r.threads},
                   {"ram_step_ms", r.ram_step_ms},
                   {"ram_step_cpu_ms", r.ram_step_cpu_ms},
                   {"rollout_samples_per_s", r.rollout_samples_per_s},
                   {"pretrain_steps_per_s", r.pretrain_steps_per_s},
                   {"network_ms",
                    std::isnan(r.network_ms) ? nlohmann::json() : nlohmann::json(r.network_ms)}});
  }
  nlohmann::json report = {{"torch", TORCH_VERSION},
                           {"device", s.device},
                           {"fused", s.fused},
                           {"macs_per_ram_step", rows[0].macs},
                           {"results", out}};
  if (torch::Device(s.device).is_cpu()) {
    // How close the step comes to the machine: its multiply-adds per second against one core's
    // peak, and the network's own share of the step.
    const auto [peak, peak_isa] = fma_peak();
    const double gmacs = rows[0].macs / (rows[0].ram_step_ms * 1e6);
    std::cout
        << std::setprecision(2) << "multiply-adds per RAM step: " << rows[0].macs / 1e6 << " M; at "
        << rows[0].threads << " thread" << (rows[0].threads > 1 ? "s" : "") << " "
        << std::setprecision(1) << gmacs << " G/s, " << std::setprecision(0) << 100 * gmacs / peak
        << "% of one core's float32 "
        << "multiply-add peak (" << std::setprecision(1) << peak << " G/s, " << peak_isa << ")\n"
        << "of which the network alone (25 forwards at batch 32, one at 128, one at 128 with its "
        << "backward): " << std::setprecision(3) << rows[0].network_ms << " ms ("
        << std::setprecision(0) << 100 * rows[0].network_ms / rows[0].ram_step_ms
        << "%); the rest of the step " << std::setprecision(3)
        << rows[0].ram_step_ms - rows[0].network_ms << " ms\n";
    report["core_fma_peak_gmacs"] = peak;
    report["core_fma_peak_isa"] = peak_isa;
  }
  if (!json_path.empty()) ramflow::write_json_atomic(json_path, report);
  return 0;
}
