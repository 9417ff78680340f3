#pragma once
// Process-wide settings for a program that trains: call from main(), never from library code.
#include <string>

namespace ramflow {

/// Keeps freed memory inside the process (glibc: no heap trimming, no mmap below 32 MiB), so that
/// the same-sized tensors a training step allocates and frees again do not page-fault afresh every
/// step. A no-op elsewhere. Returns whether the allocator was changed.
bool keep_freed_memory();

/// The kernel family OpenBLAS chose for this CPU (its openblas_get_corename()), or "" where the
/// process has no OpenBLAS (LibTorch built with MKL, or reference BLAS).
std::string blas_core_name();
/// Sets torch's intra-op threads to n, and OpenBLAS's own thread pool too where LibTorch's BLAS is
/// OpenBLAS (its idle threads otherwise spin on sched_yield and take the cores torch was told to
/// leave).
void set_threads(int n);

/// A one-line note when OpenBLAS runs kernels far older than the CPU (a virtual CPU that hides its
/// model makes OpenBLAS fall back to, e.g., "Prescott": every LibTorch matrix product then runs
/// several times slower), naming the variable that fixes it; "" otherwise. ramflow never sets the
/// variable itself.
std::string blas_kernel_note();
/// The rule behind blas_kernel_note(), for a given core name and instruction sets.
std::string blas_kernel_note_for(const std::string& core, bool avx2, bool avx512f);

}  // namespace ramflow
