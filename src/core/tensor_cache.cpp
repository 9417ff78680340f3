// The cache of large CPU tensor blocks (see tensor_cache.h).
#include "tensor_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include <c10/core/CPUAllocator.h>

namespace ramflow {

namespace {
constexpr size_t kPage = 4096;
TensorCache* the_cache = nullptr;  // set once by keep_freed_memory(), never destroyed

size_t whole_pages(size_t n) { return (n + kPage - 1) / kPage * kPage; }
}  // namespace

TensorCache::TensorCache(c10::Allocator* fallback, size_t min_bytes)
    : fallback_(fallback), min_bytes_(min_bytes) {}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
c10::DataPtr TensorCache::allocate(size_t n) { return take(n); }
void TensorCache::copy_data(void* dest, const void* src, std::size_t count) const {
  std::memcpy(dest, src, count);
}
#else
c10::DataPtr TensorCache::allocate(size_t n) const {
  return const_cast<TensorCache*>(this)->take(n);
}
#endif

c10::DeleterFnPtr TensorCache::raw_deleter() const { return &TensorCache::release; }

c10::DataPtr TensorCache::take(size_t n) {
  if (n < min_bytes_) return fallback_->allocate(n);
  const size_t bytes = whole_pages(n);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = idle_by_size_.find(bytes);
    if (it != idle_by_size_.end() && !it->second.empty()) {
      // A hit: the most recently freed block of this size (likeliest still in the caches).
      const auto block = it->second.back();
      it->second.pop_back();
      ptr = block->ptr;
      idle_.erase(block);
      ++stats_.hits;
      stats_.idle_bytes -= static_cast<int64_t>(bytes);
    } else {
      ++stats_.misses;
      // Idle blocks go, oldest first, until the new block fits under the live peak so far.
      const int64_t over = stats_.live_bytes + stats_.idle_bytes + static_cast<int64_t>(bytes) -
                           stats_.peak_live_bytes;
      if (over > 0) unmap_oldest(static_cast<size_t>(over));
    }
    if (ptr == nullptr) {
      ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (ptr == MAP_FAILED) {
        unmap_oldest(SIZE_MAX);  // everything idle, then once more
        ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        TORCH_CHECK(ptr != MAP_FAILED, "out of memory: a CPU tensor of ", n, " bytes");
      }
    }
    live_.emplace(ptr, bytes);
    stats_.live_bytes += static_cast<int64_t>(bytes);
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    stats_.peak_mapped_bytes =
        std::max(stats_.peak_mapped_bytes, stats_.live_bytes + stats_.idle_bytes);
  }
  return {ptr, ptr, &TensorCache::release, c10::Device(c10::DeviceType::CPU)};
}

void TensorCache::give_back(void* ptr) {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto it = live_.find(ptr);
  if (it == live_.end()) {
    // A small block of the fallback freed through raw_deleter() (Allocator::raw_deallocate).
    lock.unlock();
    fallback_->raw_deleter()(ptr);
    return;
  }
  const size_t bytes = it->second;
  live_.erase(it);
  idle_.push_back({ptr, bytes});
  idle_by_size_[bytes].push_back(std::prev(idle_.end()));
  stats_.live_bytes -= static_cast<int64_t>(bytes);
  stats_.idle_bytes += static_cast<int64_t>(bytes);
}

void TensorCache::unmap_oldest(size_t at_least) {
  size_t released = 0;
  while (released < at_least && !idle_.empty()) {
    const Idle block = idle_.front();
    auto& same = idle_by_size_[block.bytes];
    same.erase(std::find(same.begin(), same.end(), idle_.begin()));
    if (same.empty()) idle_by_size_.erase(block.bytes);
    idle_.pop_front();
    munmap(block.ptr, block.bytes);
    released += block.bytes;
    stats_.idle_bytes -= static_cast<int64_t>(block.bytes);
  }
}

void TensorCache::release(void* ptr) { the_cache->give_back(ptr); }

TensorCacheStats TensorCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void install_tensor_cache() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Blocks that glibc would map afresh each time (keep_freed_memory() fixes its mmap threshold at
    // kCachedFrom); below it glibc's heap reuses freed memory by itself.
    the_cache = new TensorCache(c10::GetCPUAllocator(), kCachedFrom);
    c10::SetCPUAllocator(the_cache, /*priority=*/1);
  });
}

TensorCacheStats tensor_cache_stats() {
  return the_cache ? the_cache->stats() : TensorCacheStats{};
}

}  // namespace ramflow
