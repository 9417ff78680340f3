// Tests for the process-wide runtime checks (include/ramflow/runtime.h).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ramflow
