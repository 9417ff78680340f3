#pragma once
// Process-wide settings for a program that trains: call from main(), never from library code.

namespace ramflow {

/// Keeps freed memory inside the process (glibc: no heap trimming, no mmap below 32 MiB), so that the
/// same-sized tensors a training step allocates and frees again do not page-fault afresh every step.
/// A no-op elsewhere. Returns whether the allocator was changed.
bool keep_freed_memory();

}  // namespace ramflow
