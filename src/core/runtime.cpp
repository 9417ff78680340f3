// Process-wide settings (see include/ramflow/runtime.h).
#include "ramflow/runtime.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ramflow {

bool keep_freed_memory() {
#if defined(__GLIBC__)
  // Both thresholds are fixed once set (glibc stops adapting them).
  const bool trim = mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1;
  const bool mmap = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  return trim && mmap;
#else
  return false;
#endif
}

}  // namespace ramflow
