// Tests for the process-wide runtime checks (include/ramflow/runtime.h).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <thread>

#include "ramflow/runtime.h"

namespace ramflow {
namespace {

TEST(RuntimeTest, BlasNoteNamesTheVariableOnlyForKernelsOlderThanTheCpu) {
  const auto skylake = blas_kernel_note_for("Prescott", /*avx2=*/true, /*avx512f=*/true);
  EXPECT_NE(skylake.find("'Prescott'"), std::string::npos) << skylake;
  EXPECT_NE(skylake.find("OPENBLAS_CORETYPE=SkylakeX"), std::string::npos) << skylake;
  EXPECT_NE(blas_kernel_note_for("Nehalem", true, false).find("OPENBLAS_CORETYPE=Haswell"),
            std::string::npos);
  EXPECT_NE(blas_kernel_note_for("sandybridge", true, false).find("Haswell"),
            std::string::npos);  // any case
  // Kernels that use what the CPU has, an old CPU, or no OpenBLAS at all: nothing to say.
  for (const char* fine : {"SkylakeX", "Cooperlake", "Haswell", "Zen", "SapphireRapids"})
    EXPECT_EQ(blas_kernel_note_for(fine, true, true), "") << fine;
  EXPECT_EQ(blas_kernel_note_for("Prescott", false, false), "");
  EXPECT_EQ(blas_kernel_note_for("", true, true), "");
}

TEST(RuntimeTest, TheProcessNoteIsTheRuleAppliedToThisProcess) {
  // The note of this process is the rule applied to this process's BLAS core and CPU, whatever BLAS
  // the build links (a LibTorch without OpenBLAS has no core name, and then no note).
  const auto note = blas_kernel_note();
#if defined(__x86_64__) || defined(__i386__)
  EXPECT_EQ(note, blas_kernel_note_for(blas_core_name(), __builtin_cpu_supports("avx2"),
                                       __builtin_cpu_supports("avx512f")));
#endif
  if (blas_core_name().empty()) {
    EXPECT_EQ(note, "");
  }
  // Where there is a note, it names the variable to set (ramflow never sets it).
  if (!note.empty()) {
    EXPECT_NE(note.find("OPENBLAS_CORETYPE="), std::string::npos) << note;
  }
}

// set_threads(n) gives torch n threads and restores them; available_cores() counts at least one
// core and no more than the hardware has.
TEST(RuntimeTest, SetThreadsSetsTorchsCountAndCoresAreCounted) {
  const int before = at::get_num_threads();
  set_threads(2);
  EXPECT_EQ(at::get_num_threads(), 2);
  set_threads(before);
  EXPECT_EQ(at::get_num_threads(), before);
  EXPECT_GE(available_cores(), 1);
  if (std::thread::hardware_concurrency() > 0) {
    EXPECT_LE(available_cores(), static_cast<int>(std::thread::hardware_concurrency()));
  }
}

// 32 MiB of float32, the smallest block the cache keeps (glibc's heap keeps the smaller ones).
constexpr int64_t kBlock = int64_t{1} << 23;

TEST(TensorCacheTest, AFreedBlockServesTheNextRequestOfItsSize) {
  keep_freed_memory();  // (the test main has called it already: a second call changes nothing)
  keep_freed_memory();
  const auto before = tensor_cache_stats();
  void* first = nullptr;
  {
    auto a = torch::full({kBlock}, 3.0f);
    first = a.data_ptr();
  }
  auto b = torch::empty({kBlock});  // the same size: the same block
  EXPECT_EQ(b.data_ptr(), first);
  b.fill_(5.0f);
  EXPECT_EQ(b.sum().item<float>(), 5.0f * kBlock);  // (an exact sum of 2^23 fives)
  const auto after = tensor_cache_stats();
  EXPECT_GE(after.hits, before.hits + 1);
  EXPECT_GE(after.live_bytes, before.live_bytes + kBlock * 4);
  // Smaller tensors are glibc's: they do not pass through the cache.
  const auto small_before = tensor_cache_stats();
  { auto s = torch::ones({1000}), m = torch::ones({kBlock / 8}); }
  EXPECT_EQ(tensor_cache_stats().hits + tensor_cache_stats().misses,
            small_before.hits + small_before.misses);
}

TEST(TensorCacheTest, TheMappedTotalNeverExceedsTheLivePeak) {
  keep_freed_memory();
  // Three blocks freed, then one of three times their size and one of twice (no idle block of
  // their sizes): idle blocks are unmapped first, so the mapped total stays within the live peak.
  { auto a = torch::ones({kBlock}), b = torch::ones({kBlock}), c = torch::ones({kBlock}); }
  EXPECT_GE(tensor_cache_stats().idle_bytes, 3 * kBlock * 4);
  {
    auto big = torch::ones({3 * kBlock});
    auto other = torch::ones({2 * kBlock});
  }
  const auto s = tensor_cache_stats();
  EXPECT_LE(s.peak_mapped_bytes, s.peak_live_bytes);
  EXPECT_GE(s.peak_live_bytes, 5 * kBlock * 4);
  EXPECT_GE(s.idle_bytes, 0);
  // Threads allocating and freeing at once (LibTorch's intra-op threads do): nothing lost.
  const auto live_before = tensor_cache_stats().live_bytes;
  at::set_num_threads(4);
  at::parallel_for(0, 16, 1, [](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto t = torch::full({kBlock + 1024 * (i % 3)}, static_cast<float>(i));
      EXPECT_EQ(t[7].item<float>(), static_cast<float>(i));
    }
  });
  at::set_num_threads(1);
  EXPECT_EQ(tensor_cache_stats().live_bytes, live_before);
  EXPECT_LE(tensor_cache_stats().peak_mapped_bytes, tensor_cache_stats().peak_live_bytes);
}

}  // namespace
}  // namespace ramflow
