// safetensors: round trips, the byte layout of the format, and corrupt files.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {
namespace {

std::string temp(const std::string& name) { return ::testing::TempDir() + name; }

TEST(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"f32", torch::randn({3, 4})},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"i64", torch::arange(5)},
      {"u8", torch::tensor({1, 2, 255}, torch::kUInt8)},
      {"bool", torch::tensor({true, false})},
      {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::randn({4, 4}).t()}};  // non-contiguous input
  const auto path = temp("roundtrip.safetensors");
  save_safetensors(path, tensors, {{"note", "hello"}});
  auto file = load_safetensors(path);
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& kv : tensors) {
    const auto& t = file.at(kv.first);
    EXPECT_EQ(t.scalar_type(), kv.second.scalar_type()) << kv.first;
    EXPECT_TRUE(torch::equal(t, kv.second)) << kv.first;
  }
  EXPECT_EQ(file.metadata.at("note"), "hello");
}

TEST(SafetensorsTest, ByteLayoutFollowsTheFormat) {
  const auto path = temp("layout.safetensors");
  save_safetensors(path, {{"a", torch::tensor({1.0f, 2.0f})}}, {});
  const std::string bytes = read_file(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u);  // tensor data 8-byte aligned
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["a"]["dtype"], "F32");
  EXPECT_EQ(header["a"]["shape"], nlohmann::json::array({2}));
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json::array({0, 8}));
  EXPECT_EQ(bytes.size(), 8 + n + 8);
  float v[2];
  std::memcpy(v, bytes.data() + 8 + n, 8);  // little-endian float32 data
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 2.0f);
  // The atomic write leaves no temporary file behind.
  for (const auto& e : std::filesystem::directory_iterator(::testing::TempDir()))
    EXPECT_EQ(e.path().string().find("layout.safetensors.tmp"), std::string::npos);
}

void expect_corrupt(const std::string& name, const std::string& bytes, const std::string& why) {
  const auto path = temp(name);
  std::ofstream(path, std::ios::binary) << bytes;
  try {
    load_safetensors(path);
    FAIL() << "expected IOError for " << name;
  } catch (const IOError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(why), std::string::npos) << msg;
  }
}

TEST(SafetensorsTest, CorruptFilesAreRefusedWithThePath) {
  const auto good_path = temp("good.safetensors");
  save_safetensors(good_path, {{"w", torch::randn({4})}});
  const std::string good = read_file(good_path);
  expect_corrupt("short.safetensors", "abc", "shorter than");
  expect_corrupt("truncated.safetensors", good.substr(0, good.size() - 3), "");
  std::string huge = good;
  huge[7] = '\x7f';  // header length far beyond the file
  expect_corrupt("hugeheader.safetensors", huge, "exceeds the file");
  std::string notjson = good;
  notjson[8] = '#';
  expect_corrupt("notjson.safetensors", notjson, "not JSON");
  EXPECT_THROW(load_safetensors(temp("does_not_exist.safetensors")), IOError);
}

TEST(CheckpointTest, NonRamflowFilesAreNotCheckpoints) {
  const auto path = temp("plain.safetensors");
  save_safetensors(path, {{"w", torch::randn({4})}});
  EXPECT_THROW(read_checkpoint_meta(path), IOError);
}

}  // namespace
}  // namespace ramflow
