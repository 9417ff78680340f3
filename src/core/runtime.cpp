// Process-wide settings (see include/ramflow/runtime.h).
#include "ramflow/runtime.h"

#include <dlfcn.h>
#include <sched.h>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <thread>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "cpu_kernels.h"

#include "tensor_cache.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ramflow {

bool keep_freed_memory() {
  install_tensor_cache();
#if defined(__GLIBC__)
  // Both thresholds are fixed once set (glibc stops adapting them).
  const bool trim = mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1;
  const bool mmap = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kCachedFrom)) == 1;
  return trim && mmap;
#else
  return false;
#endif
}

std::string blas_core_name() {
  // Looked up at run time: the symbol exists only where LibTorch's BLAS is OpenBLAS.
  using CoreName = char* (*)();
  auto* get = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = get ? get() : nullptr;
  return name ? std::string(name) : std::string();
}

int available_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void set_threads(int n) {
  at::set_num_threads(n);
  using SetThreads = void (*)(int);
  if (auto* set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set(1);  // one OpenBLAS thread under torch's n (runtime.h)
}

std::string blas_kernel_note_for(const std::string& core, bool avx2, bool avx512f) {
  if (core.empty() || !avx2) return "";
  std::string c = core;
  std::transform(c.begin(), c.end(), c.begin(), [](unsigned char ch) { return std::tolower(ch); });
  // OpenBLAS's kernel families without AVX2 (SSE-era Intel and AMD cores, and Sandy Bridge's AVX1).
  static const char* kOld[] = {
      "prescott",  "core2",      "penryn",      "dunnington", "nehalem", "atom",
      "katmai",    "coppermine", "northwood",   "banias",     "opteron", "opteron_sse3",
      "barcelona", "bobcat",     "sandybridge", "generic",    "unknown"};
  if (std::none_of(std::begin(kOld), std::end(kOld), [&](const char* k) { return c == k; }))
    return "";
  const std::string better = avx512f ? "SkylakeX" : "Haswell";
  return "OpenBLAS runs its '" + core + "' kernels on this " + (avx512f ? "AVX-512" : "AVX2") +
         " CPU, so LibTorch's matrix products run several times slower than they could; set "
         "OPENBLAS_CORETYPE=" +
         better + " in the environment to use its " + better + " kernels";
}

std::string blas_kernel_note() {
#if defined(__x86_64__) || defined(__i386__)
  return blas_kernel_note_for(blas_core_name(), __builtin_cpu_supports("avx2"),
                              __builtin_cpu_supports("avx512f"));
#else
  return "";
#endif
}

std::string version_text() {
  std::ostringstream s;
  s << "ramflow " << RAMFLOW_VERSION << "\n"
    << "LibTorch " << TORCH_VERSION << "\n"
    << "CPU kernels: " << kernels::isa();
  if (const char* cap = std::getenv("RAMFLOW_ISA")) s << " (RAMFLOW_ISA=" << cap << ")";
  s << "\n";
  const std::string blas = blas_core_name();
  s << "BLAS: " << (blas.empty() ? "not OpenBLAS" : "OpenBLAS, " + blas + " kernels") << "\n"
    << "devices: cpu (" << available_cores() << " cores)";
  if (torch::cuda::is_available()) s << ", cuda (" << torch::cuda::device_count() << " GPUs)";
  s << "\n";
  return s.str();
}

}  // namespace ramflow
