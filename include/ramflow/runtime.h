#pragma once
// Process-wide settings for a program that trains: call from main(), never from library code.
#include <cstdint>
#include <string>

namespace ramflow {

/// Keeps freed memory inside the process, so that the same-sized tensors a training step allocates
/// and frees again do not page-fault afresh every step (a fault and a zeroed page per 4 KB of a
/// fresh block: several percent of a transformer's step). glibc keeps blocks below 32 MiB (no heap
/// trimming, no mmap below 32 MiB); CPU tensor blocks of 32 MiB and more go through a cache that
/// hands a freed block back to the next request of its size and unmaps idle blocks before the
/// mapped total would pass the largest live total so far (src/core/tensor_cache.h). Changes
/// LibTorch's CPU allocator for the whole process: call it once, first thing in main(). Returns
/// whether glibc's settings took (false where there is no glibc).
bool keep_freed_memory();

/// What keep_freed_memory()'s cache of CPU tensor blocks holds and has done, in bytes of whole
/// pages; all zero before keep_freed_memory().
struct TensorCacheStats {
  int64_t live_bytes = 0;         // blocks held by tensors now
  int64_t idle_bytes = 0;         // freed blocks kept for reuse
  int64_t peak_live_bytes = 0;    // the largest live_bytes so far
  int64_t peak_mapped_bytes = 0;  // the largest live_bytes + idle_bytes so far
  int64_t hits = 0;               // requests served by an idle block
  int64_t misses = 0;             // requests that mapped a new block
};
TensorCacheStats tensor_cache_stats();

/// The kernel family OpenBLAS chose for this CPU (its openblas_get_corename()), or "" where the
/// process has no OpenBLAS (LibTorch built with MKL, or reference BLAS).
std::string blas_core_name();
/// Sets torch's intra-op threads to n, and OpenBLAS's own thread pool to one thread where
/// LibTorch's BLAS is OpenBLAS: torch parallelises around its matrix products (batched products,
/// convolutions, element-wise work) on its OpenMP threads, and a second pool of OpenBLAS threads
/// spinning beside them takes the cores they need. On 2 cores, 6 steps of `finetune --task words`:
/// 28.4 s on 1 thread, 43.1 s on 2 with OpenBLAS on 2, 20.7 s on 2 with OpenBLAS on 1; 10 steps of
/// `--task fashion`: 9.3, 7.2 and 5.2 s.
void set_threads(int n);
/// The cores this process may run on (its affinity mask; the hardware's count where there is
/// none). The CLI's default thread count: LibTorch's own default counts cores through cpuinfo,
/// which some virtual machines misreport (1 on a 2-core one).
int available_cores();

/// A one-line note when OpenBLAS runs kernels far older than the CPU (a virtual CPU that hides its
/// model makes OpenBLAS fall back to, e.g., "Prescott": every LibTorch matrix product then runs
/// several times slower), naming the variable that fixes it; "" otherwise. ramflow never sets the
/// variable itself.
std::string blas_kernel_note();
/// The rule behind blas_kernel_note(), for a given core name and instruction sets.
std::string blas_kernel_note_for(const std::string& core, bool avx2, bool avx512f);

/// What `ramflow --version` prints, one fact per line: ramflow's version, the LibTorch it was built
/// against, the instruction set of its CPU kernels (after RAMFLOW_ISA), OpenBLAS's kernels, and the
/// devices (the cores this process may use; CUDA GPUs where LibTorch has CUDA).
std::string version_text();

}  // namespace ramflow
