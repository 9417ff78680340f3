// Tests for the IDX reader and writer (include/ramflow/idx.h).
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/idx.h"
#include "ramflow/io.h"

namespace ramflow {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  const auto dir = fs::temp_directory_path() / "ramflow_idx_test";
  fs::create_directories(dir);
  return (dir / name).string();
}

// The message of the InputError that `f` throws ("" if it throws nothing).
template <class F>
std::string input_error(F f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(IdxTest, EveryTypeRoundTripsPlainAndGzipped) {
  torch::manual_seed(0);  // the arrays' values do not matter, only that they round-trip
  const std::vector<torch::Tensor> arrays = {
      torch::randint(0, 256, {7, 3, 5}).to(torch::kByte),
      torch::randint(-128, 128, {11}).to(torch::kChar),
      torch::randint(-30000, 30000, {4, 6}).to(torch::kShort),
      torch::randint(-100000, 100000, {2, 3, 4, 5}).to(torch::kInt),
      torch::randn({9, 2}),
      torch::randn({3, 3}, torch::kDouble)};
  for (bool gzip : {false, true})
    for (size_t i = 0; i < arrays.size(); ++i) {
      const auto path = temp_path(std::string("a") + std::to_string(i) + (gzip ? ".gz" : ""));
      write_idx(path, arrays[i], gzip);
      const auto back = read_idx(path, arrays[i].dim());
      EXPECT_EQ(back.scalar_type(), arrays[i].scalar_type());
      EXPECT_TRUE(torch::equal(back, arrays[i])) << "array " << i << " gzip " << gzip;
    }
}

TEST(IdxTest, TheHeaderIsBigEndianAsInMnist) {
  // Bytes written by hand: uint8, rank 2, sizes 2 x 3 (big-endian), then the data.
  const std::string bytes = std::string("\0\0\x08\x02\0\0\0\x02\0\0\0\x03", 12) + "abcdef";
  const auto path = temp_path("hand.idx");
  write_file_atomic(path, bytes);
  const auto a = read_idx(path, 2);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a[1][2].item<uint8_t>(), 'f');
  // int16 values are big-endian: 0x0102 = 258.
  write_file_atomic(path, std::string("\0\0\x0B\x01\0\0\0\x01\x01\x02", 10));
  EXPECT_EQ(read_idx(path).item<int16_t>(), 258);
}

TEST(IdxTest, BadFilesAreRefusedBeforeAllocationWithTheReason) {
  const auto path = temp_path("bad.idx");
  auto with = [&](const std::string& bytes) {
    write_file_atomic(path, bytes);
    return input_error([&] { read_idx(path); });
  };
  const std::string head = std::string("\0\0\x08\x01\0\0\0\x04", 8);
  EXPECT_EQ(with(head + "abcd"), "");
  EXPECT_NE(with(std::string("\x01\0\x08\x01\0\0\0\x04", 8) + "abcd").find("not an IDX file"),
            std::string::npos);
  EXPECT_NE(
      with(std::string("\0\0\x07\x01\0\0\0\x04", 8) + "abcd").find("unknown IDX element type 0x07"),
      std::string::npos);
  EXPECT_NE(with(std::string("\0\0\x08\x05", 4)).find("IDX rank 5"), std::string::npos);
  EXPECT_NE(with(std::string("\0\0\x08\x01\0\0\0\0", 8)).find("size 0 is 0"), std::string::npos);
  EXPECT_NE(with(head + "abc").find("(truncated)"), std::string::npos);
  EXPECT_NE(with(head + "abcde").find("(trailing data)"), std::string::npos);
  EXPECT_NE(with(std::string("\0\0\x08", 3)).find("truncated"), std::string::npos);
  // Sizes whose product is absurd are refused from the header alone (nothing is allocated).
  EXPECT_NE(with(std::string("\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\x02", 16))
                .find("more than 2^34"),
            std::string::npos);
  // The rank a caller requires.
  write_file_atomic(path, head + "abcd");
  EXPECT_NE(input_error([&] { read_idx(path, 3); }).find("IDX rank 1, expected 3"),
            std::string::npos);
  EXPECT_NE(input_error([&] { read_idx(temp_path("missing.idx")); }).find("cannot open file"),
            std::string::npos);
}

TEST(IdxTest, ATruncatedGzipFileIsRefusedByItsLength) {
  const auto path = temp_path("cut.gz");
  write_idx(path, torch::arange(1000, torch::kInt), /*gzip=*/true);
  const auto full = read_file(path);
  // Cut inside the stream: the trailer's length no longer matches the header, or the stream ends
  // early.
  write_file_atomic(path, full.substr(0, full.size() / 2));
  EXPECT_NE(input_error([&] { read_idx(path); }), "");
  // The stream minus its 8-byte trailer (CRC and length): refused, never read past its end.
  write_file_atomic(path, full.substr(0, full.size() - 8));
  EXPECT_NE(input_error([&] { read_idx(path); }), "");
}

// Debian's dataset-fashion-mnist (installed by scripts/setup): the four files as the images task
// reads them.
TEST(IdxTest, FashionMnistFilesHaveTheirDocumentedShapes) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-labels-idx1-ubyte.gz")) GTEST_SKIP() << dir << " is not installed";
  const auto labels = read_idx(dir + "/t10k-labels-idx1-ubyte.gz", 1);
  EXPECT_EQ(labels.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_EQ(labels.min().item<uint8_t>(), 0);
  EXPECT_EQ(labels.max().item<uint8_t>(), 9);
  // Balanced classes: 1000 test images each.
  EXPECT_TRUE(torch::equal(torch::bincount(labels.to(torch::kLong)),
                           torch::full({10}, 1000, torch::kLong)));
  const auto images = read_idx(dir + "/t10k-images-idx3-ubyte.gz", 3);
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{10000, 28, 28}));
  EXPECT_EQ(read_idx(dir + "/train-labels-idx1-ubyte.gz", 1).size(0), 60000);
}

}  // namespace
}  // namespace ramflow
