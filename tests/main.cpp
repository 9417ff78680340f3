// Test main: one torch thread per test process (ctest runs several processes at once), so results
// do not depend on the core count.
#include <gtest/gtest.h>
#include <torch/torch.h>

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
