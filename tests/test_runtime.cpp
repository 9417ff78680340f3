// Tests for the process-wide runtime checks (include/ramflow/runtime.h).
#include <gtest/gtest.h>

#include "ramflow/runtime.h"

namespace ramflow {
namespace {

TEST(RuntimeTest, BlasNoteNamesTheVariableOnlyForKernelsOlderThanTheCpu) {
  const auto skylake = blas_kernel_note_for("Prescott", /*avx2=*/true, /*avx512f=*/true);
  EXPECT_NE(skylake.find("'Prescott'"), std::string::npos) << skylake;
  EXPECT_NE(skylake.find("OPENBLAS_CORETYPE=SkylakeX"), std::string::npos) << skylake;
  EXPECT_NE(blas_kernel_note_for("Nehalem", true, false).find("OPENBLAS_CORETYPE=Haswell"), std::string::npos);
  EXPECT_NE(blas_kernel_note_for("sandybridge", true, false).find("Haswell"), std::string::npos);  // any case
  // Kernels that use what the CPU has, an old CPU, or no OpenBLAS at all: nothing to say.
  for (const char* fine : {"SkylakeX", "Cooperlake", "Haswell", "Zen", "SapphireRapids"})
    EXPECT_EQ(blas_kernel_note_for(fine, true, true), "") << fine;
  EXPECT_EQ(blas_kernel_note_for("Prescott", false, false), "");
  EXPECT_EQ(blas_kernel_note_for("", true, true), "");
}

TEST(RuntimeTest, TheProcessNoteIsTheRuleAppliedToThisProcess) {
  // Whatever BLAS this build links, the note is empty or names the variable (never set by ramflow).
  const auto note = blas_kernel_note();
  EXPECT_TRUE(note.empty() || note.find("OPENBLAS_CORETYPE=") != std::string::npos) << note;
  if (!blas_core_name().empty()) SUCCEED() << "OpenBLAS core: " << blas_core_name();
}

}  // namespace
}  // namespace ramflow
