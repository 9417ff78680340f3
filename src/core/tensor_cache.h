#pragma once
// The cache of large CPU tensor blocks behind keep_freed_memory() (internal; see
// include/ramflow/runtime.h for the public side).
#include <c10/core/Allocator.h>
#include <torch/version.h>

#include <cstddef>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ramflow/runtime.h"

namespace ramflow {

/// LibTorch's CPU allocator with a cache of large blocks. A training step allocates and frees
/// the same tensor sizes again and again; glibc maps each block of 32 MiB and more afresh, and the
/// kernel fills it page by page (a fault and a zeroed page per 4 KB), which costs several percent
/// of a step of a transformer. Here a freed block of at least `min_bytes` stays mapped ("idle") and
/// the next request of the same size (rounded up to whole pages) takes it back.
///
/// The footprint never exceeds the largest live total P so far: before a request of r bytes that
/// no idle block fits maps new memory, idle blocks are unmapped, oldest first, until live L, idle I
/// and r fit, L + I + r <= P, or nothing is idle (then L + r is the new live total, and the new P).
/// A hit moves bytes from I to L and a free from L to I, so L + I <= P holds throughout: the
/// mapped total stays at or below the peak of the live total, as without a cache.
///
/// Smaller requests go to the allocator this one replaced (glibc's heap keeps those).
class TensorCache final : public c10::Allocator {
 public:
  TensorCache(c10::Allocator* fallback, size_t min_bytes);

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override;
  void copy_data(void* dest, const void* src, std::size_t count) const override;
#else
  c10::DataPtr allocate(size_t n) const override;
#endif
  c10::DeleterFnPtr raw_deleter() const override;

  TensorCacheStats stats() const;

 private:
  struct Idle {
    void* ptr;
    size_t bytes;
  };
  c10::DataPtr take(size_t n);
  void give_back(void* ptr);
  void unmap_oldest(size_t at_least);  // with mutex_ held
  static void release(void* ptr);      // the blocks' deleter

  c10::Allocator* fallback_;
  size_t min_bytes_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;  // block -> mapped bytes
  std::list<Idle> idle_;                    // freed blocks, oldest first
  std::unordered_map<size_t, std::vector<std::list<Idle>::iterator>> idle_by_size_;
  TensorCacheStats stats_;
};

/// glibc's mmap threshold as keep_freed_memory() fixes it, and the smallest block the cache keeps.
constexpr size_t kCachedFrom = size_t{32} << 20;

/// Makes a TensorCache of the blocks from kCachedFrom up LibTorch's CPU allocator (once; later
/// calls do nothing).
void install_tensor_cache();

}  // namespace ramflow
