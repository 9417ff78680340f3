// Test main: one torch thread per test process (ctest runs several processes at once), so results
// do not depend on the core count; freed memory kept as the ramflow CLI keeps it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/runtime.h"

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  ramflow::keep_freed_memory();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
