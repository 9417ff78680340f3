#pragma once
// Helpers shared by the test files.
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "ramflow/checkpoint.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/pretrain.h"
#include "ramflow/sampler.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

#include <cctype>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>
#include <string>

#include "ramflow/idx.h"
#include "ramflow/io.h"

namespace ramflow::testing {

/// A file of the source tree, by its path from the repository root.
inline std::string source(const std::string& relative) {
  return std::string(RAMFLOW_TEST_SOURCE_DIR) + "/../" + relative;
}

/// ::testing::TempDir()/ramflow_<name>, emptied: a test's own output directory.
inline std::string fresh_temp_dir(const std::string& name) {
  const auto p = std::filesystem::path(::testing::TempDir()) / ("ramflow_" + name);
  remove_tree(p.string());
  return p.string();
}

/// A registered name (a method's) as a parameterised test's name: every character but [A-Za-z0-9]
/// as '_'.
inline std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return s;
}

/// A cache directory of base models for this test process alone, emptied once when first asked for.
/// ctest runs tests as concurrent processes: a cache shared between them, emptied by one while
/// another writes into it, fails the writer.
inline std::string process_cache_dir() {
  static const std::string dir = [] {
    auto p = std::filesystem::path(::testing::TempDir()) /
             ("ramflow_cache_" + std::to_string(::getpid()));
    remove_tree(p.string());
    return p.string();
  }();
  return dir;
}

/// A Python script started as a child process (a reward server); its first line of output is its
/// URL. Killed on destruction.
class Server {
 public:
  explicit Server(std::vector<std::string> args) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(RAMFLOW_PYTHON));
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(RAMFLOW_PYTHON, argv.data());
      std::_Exit(127);
    }
    ::close(fds[1]);
    FILE* out = ::fdopen(fds[0], "r");
    char line[512] = {0};
    if (!std::fgets(line, sizeof(line), out)) throw std::runtime_error("the server printed no URL");
    url_ = line;
    url_.erase(url_.find_last_not_of(" \n\r") + 1);
    std::fclose(out);
  }
  ~Server() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

// A small sd3_char (a character encoder and a two-block MM-DiT, patches of 2) for one-channel
// images of up to 12 x 12 pixels and prompts of up to `max_length` letters.
inline nlohmann::json tiny_sd3_char_spec(int64_t max_length) {
  return {{"type", "sd3_char"},
          {"encoder", {{"max_length", max_length}, {"dim", 8}, {"layers", 1}, {"heads", 2}}},
          {"config",
           {{"sample_size", 8},
            {"patch_size", 2},
            {"in_channels", 1},
            {"num_layers", 2},
            {"attention_head_dim", 4},
            {"num_attention_heads", 2},
            {"caption_projection_dim", 8},
            {"out_channels", 1},
            {"pos_embed_max_size", 6},
            {"qk_norm", "rms_norm"}}}};
}

/// A run's metrics.jsonl, each line without its wall-clock "seconds" (what repeats bit for bit).
inline std::vector<nlohmann::json> metrics_without_seconds(const std::string& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("seconds");
    out.push_back(j);
  }
  return out;
}

/// Every tensor of two safetensors files equal bit for bit, in the same order, and their training
/// state
/// ("trainer" metadata) equal but for the wall-clock seconds.
inline void expect_same_checkpoint(const std::string& a, const std::string& b) {
  const auto fa = load_safetensors(a), fb = load_safetensors(b);
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size()) << a << " vs " << b;
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    EXPECT_EQ(fa.tensors[i].first, fb.tensors[i].first);
    EXPECT_TRUE(torch::equal(fa.tensors[i].second, fb.tensors[i].second)) << fa.tensors[i].first;
  }
  auto ta = nlohmann::json::parse(fa.metadata.at("ramflow")).value("trainer", nlohmann::json());
  auto tb = nlohmann::json::parse(fb.metadata.at("ramflow")).value("trainer", nlohmann::json());
  if (ta.is_object()) ta.erase("seconds");
  if (tb.is_object()) tb.erase("seconds");
  EXPECT_EQ(ta, tb);
}

/// A tiny labelled image dataset in IDX files under `dir` (created): `classes` classes of size x
/// size grey images; an image of class k is dark (byte 20) with a bright 2 x 2 square (byte 235) at
/// column 2k, row 1, plus byte noise in [0, 10). Training and test splits of n_train and n_test
/// images, labels cycling 0, 1, 2, ... Returns dir.
inline std::string tiny_image_dataset(const std::string& dir, int64_t n_train = 60,
                                      int64_t n_test = 30, int64_t size = 8, int64_t classes = 3) {
  std::filesystem::create_directories(dir);
  Rng rng(11);
  auto make = [&](int64_t n, const std::string& split) {
    auto labels = torch::arange(n).remainder(classes).to(torch::kByte);    // [n]
    auto images = (20 + rng.rand({n, size, size}) * 10).to(torch::kByte);  // [n, size, size]
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = i % classes;
      images[i].narrow(0, 1, 2).narrow(1, 2 * k, 2).fill_(235);
    }
    write_idx(dir + "/" + split + "-images-idx3-ubyte.gz", images, /*gzip=*/true);
    write_idx(dir + "/" + split + "-labels-idx1-ubyte", labels);
  };
  make(n_train, "train");
  make(n_test, "t10k");
  return dir;
}

/// A model of `spec` pretrained by flow matching on `task` (batch 256, lr 1e-3, seed 0, init seed
/// 0).
inline VelocityFieldPtr pretrained(const Task& task, const nlohmann::json& spec, int64_t steps) {
  auto model = make_velocity_field(spec, /*init_seed=*/0);
  pretrain_flow_matching(
      *model, [&](int64_t n, Rng& rng, Condition*) { return task.sample_data(n, rng); },
      PretrainOptions().steps(steps).batch(256).lr(1e-3).seed(0));
  return model;
}

/// The gauss1d task's base model (N(1, 0.5^2), an MLP pretrained for 2000 steps), with fixed noise
/// x1 [20000, 1] and the mean and variance of its 50-step Euler endpoints from that noise.
struct GaussianBase {
  VelocityFieldPtr model;
  torch::Tensor x1;
  double mean = 0, var = 0;
};
inline GaussianBase gaussian_base() {
  GaussianBase g;
  g.model = pretrained(*make_task("gauss1d"), MLPVelocityOptions(1).hidden(64).to_json(), 2000);
  Rng rng(5);
  g.x1 = rng.randn({20000, 1});
  auto x0 = sample(*g.model, g.x1, {}, SampleOptions().steps(50)).x0;
  g.mean = x0.mean().item<double>();
  g.var = x0.var().item<double>();
  return g;
}

}  // namespace ramflow::testing
