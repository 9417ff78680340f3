// safetensors: round trips, the byte layout of the format, corrupt files, and a full disk.
#include <csignal>
#include <filesystem>
#include <fstream>

#include <sys/resource.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/training_checkpoint.h"

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
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
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

// A file built from a header of our choosing and `data_size` bytes of data.
std::string with_header(const std::string& header, size_t data_size) {
  std::string out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + std::string(data_size, '\0');
}

// Every header field is checked before memory is allocated: offsets out of range, overlapping
// entries, a gap, a size that does not match the shape, a shape whose byte count overflows, a bad
// dtype.
TEST(SafetensorsTest, HeadersAreValidatedBeforeAnyAllocation) {
  auto entry = [](const std::string& dtype, const std::string& shape, uint64_t begin,
                  uint64_t end) {
    return R"({"dtype": ")" + dtype + R"(", "shape": )" + shape + R"(, "data_offsets": [)" +
           std::to_string(begin) + ", " + std::to_string(end) + "]}";
  };
  expect_corrupt("outside.safetensors",
                 with_header(R"({"a": )" + entry("F32", "[2]", 0, 8) + "}", 4),
                 "outside the data section");
  expect_corrupt(
      "far.safetensors",
      with_header(R"({"a": )" + entry("F32", "[2]", 1ull << 62, (1ull << 62) + 8) + "}", 8),
      "outside the data section");
  expect_corrupt("overlap.safetensors",
                 with_header(R"({"a": )" + entry("F32", "[2]", 0, 8) + R"(, "b": )" +
                                 entry("F32", "[2]", 4, 12) + "}",
                             12),
                 "overlaps");
  expect_corrupt("gap.safetensors",
                 with_header(R"({"a": )" + entry("F32", "[1]", 0, 4) + R"(, "b": )" +
                                 entry("F32", "[1]", 8, 12) + "}",
                             12),
                 "belong to no tensor");
  expect_corrupt("size.safetensors", with_header(R"({"a": )" + entry("F32", "[3]", 0, 8) + "}", 8),
                 "its dtype and shape need 12");
  expect_corrupt("overflow.safetensors",
                 with_header(R"({"a": )" + entry("F64", "[4294967296, 4294967296]", 0, 8) + "}", 8),
                 "too large for any file");
  expect_corrupt("dtype.safetensors", with_header(R"({"a": )" + entry("F8", "[2]", 0, 2) + "}", 2),
                 "unsupported dtype");
  expect_corrupt("negative.safetensors",
                 with_header(R"({"a": )" + entry("F32", "[-1]", 0, 0) + "}", 0), "bad shape");
  expect_corrupt("tail.safetensors", with_header(R"({"a": )" + entry("U8", "[2]", 0, 2) + "}", 3),
                 "do not cover the data section");
  // And a well-formed file built the same way loads.
  const auto ok = temp("handmade.safetensors");
  std::ofstream(ok, std::ios::binary)
      << with_header(R"({"a": )" + entry("U8", "[2]", 0, 2) + "}", 2);
  EXPECT_EQ(load_safetensors(ok).tensors.at(0).second.sizes(), torch::IntArrayRef({2}));
}

// Every single flipped bit and every truncation of a checkpoint is either refused with an
// InputError or (a bit inside the tensor data) loads with the same names and shapes: never a crash
// or another error.
TEST(SafetensorsTest, FlippedBitsAndTruncationsAreRefusedOrHarmless) {
  const auto path = temp("flip_source.safetensors");
  save_safetensors(path,
                   {{"w", torch::arange(6, torch::kFloat).view({2, 3})},
                    {"b", torch::ones({2}, torch::kDouble)}},
                   {{"note", "x"}});
  const std::string good = read_file(path);
  const auto flipped = temp("flipped.safetensors");
  int64_t refused = 0, loaded = 0;
  for (size_t i = 0; i < good.size(); ++i)
    for (int bit = 0; bit < 8; bit += 3) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      std::ofstream(flipped, std::ios::binary | std::ios::trunc) << bad;
      try {
        const auto f = load_safetensors(flipped);
        ++loaded;
        for (const auto& [name, t] : f.tensors)
          EXPECT_TRUE(name == "w" || name == "b" || name.size() == 1);
      } catch (const InputError&) {
        ++refused;
      }
    }
  EXPECT_GT(refused, 0);
  EXPECT_GT(loaded, 0);
  for (size_t n = 0; n < good.size(); ++n) {
    std::ofstream(flipped, std::ios::binary | std::ios::trunc) << good.substr(0, n);
    EXPECT_THROW(load_safetensors(flipped), InputError) << "truncated to " << n << " bytes";
  }
}

// A disk that fills up during a checkpoint write (simulated by a file-size limit, which fails the
// write as a full disk does): an IOError naming the file, the previous file at the path intact and
// loadable, no temporary file left, and the series' `latest` still naming the last complete
// checkpoint.
TEST(SafetensorsTest, AFullDiskLeavesThePreviousCheckpointIntact) {
  const auto dir = temp("full_disk");
  remove_tree(dir);
  CheckpointSeries series(dir, 0);
  const auto small = torch::zeros({16});
  series.write(1, [&](const std::string& path) { save_safetensors(path, {{"w", small}}); });
  const auto previous = read_file(series.path(1));
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler =
      std::signal(SIGXFSZ, SIG_IGN);  // the write then fails with EFBIG instead of a signal
  rlimit tight = old;
  tight.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &tight), 0);
  std::string why;
  try {
    series.write(2, [&](const std::string& path) {
      save_safetensors(path, {{"w", torch::zeros({100000})}});
    });
  } catch (const IOError& e) {
    why = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(why.find(series.path(2) + ": write failed"), std::string::npos) << why;
  EXPECT_FALSE(std::filesystem::exists(series.path(2)));
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << e.path();
  EXPECT_EQ(series.latest(), series.path(1));
  EXPECT_EQ(read_file(series.path(1)), previous);
  EXPECT_TRUE(torch::equal(load_safetensors(series.path(1)).tensors.at(0).second, small));
}

TEST(CheckpointTest, AMissingModelIsNamedWithTheOnesTheCheckpointHas) {
  const auto path = temp("two_models.safetensors");
  auto model = make_velocity_field(MLPVelocityOptions(2).hidden(4).to_json());
  save_checkpoint(path, {{"policy", model.get()}, {"ref", model.get()}});
  try {
    load_checkpoint_model(path, "nope");
    FAIL() << "a missing model loaded";
  } catch (const InputError& e) {
    EXPECT_NE(
        std::string(e.what()).find(path + ": checkpoint has no model 'nope' (it has: policy, ref)"),
        std::string::npos)
        << e.what();
  }
}

TEST(CheckpointTest, NonRamflowFilesAreNotCheckpoints) {
  const auto path = temp("plain.safetensors");
  save_safetensors(path, {{"w", torch::randn({4})}});
  try {
    read_checkpoint_meta(path);
    FAIL() << "a plain safetensors file was taken for a checkpoint";
  } catch (const InputError& e) {
    EXPECT_NE(
        std::string(e.what()).find(path + ": not a ramflow checkpoint (no 'ramflow' metadata)"),
        std::string::npos)
        << e.what();
  }
}

// Tensors that are the same memory are written once: the second model's names become aliases, and
// the model loads from them equal to the first. Copies with equal values but their own memory are
// written.
TEST(CheckpointTest, SharedTensorsAreWrittenOnceAndLoadThroughTheirAliases) {
  const auto path = temp("shared.safetensors");
  auto model = make_velocity_field(MLPVelocityOptions(2).hidden(4).to_json());
  auto copy = clone_velocity_field(*model);
  save_checkpoint(path, {{"policy", model.get()}, {"ema", model.get()}, {"ref", copy.get()}});
  const auto file = load_safetensors(path);
  const auto meta = read_checkpoint_meta(path);
  const auto n = static_cast<int64_t>(model_tensors("policy", *model).size());
  EXPECT_EQ(static_cast<int64_t>(file.tensors.size()), 2 * n);  // policy and ref; ema only by alias
  ASSERT_EQ(static_cast<int64_t>(meta["aliases"].size()), n);
  EXPECT_EQ(meta["aliases"]["ema.layer0_weight_t"], "policy.layer0_weight_t");
  auto ema = load_checkpoint_model(path, "ema");
  for (const auto& [name, t] : model_tensors("x", *ema))
    EXPECT_TRUE(torch::equal(t, file.at("policy" + name.substr(1)))) << name;
  // An alias that names no tensor of the file is a corrupt checkpoint, named as such.
  nlohmann::json bad = meta;
  bad["aliases"]["ema.layer0_weight_t"] = "policy.nope";
  const auto corrupt = temp("bad_alias.safetensors");
  save_safetensors(corrupt, file.tensors, {{"ramflow", bad.dump()}});
  try {
    load_checkpoint_model(corrupt, "ema");
    FAIL() << "a dangling alias loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  corrupt + ": corrupt ramflow metadata (alias 'ema.layer0_weight_t' names no "
                            "tensor of the file)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ramflow
