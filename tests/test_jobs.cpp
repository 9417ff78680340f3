// End-to-end jobs: the run-directory contract, consistency between finetune / eval / sample, and
// bad input that must leave nothing half-written.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

std::string temp_dir(const std::string& name) {
  auto p = fs::path(::testing::TempDir()) / ("ramflow_jobs_" + name);
  fs::remove_all(p);
  return p.string();
}

std::vector<std::pair<std::string, std::string>> small_run(const std::string& out) {
  return {{"out", out},           {"cache_dir", temp_dir("cache")}, {"pretrain_steps", "300"},
          {"steps", "12"},        {"group", "16"},                  {"draws", "2"},
          {"eval_every", "5"},    {"eval_samples", "300"},          {"eval_pool", "1000"},
          {"eval_curve_samples", "100"}, {"eval_steps", "10"},      {"rollout_steps", "5"}};
}

bool is_png(const std::string& path) {
  auto bytes = read_file(path);
  return bytes.size() > 8 && bytes.compare(1, 3, "PNG") == 0;
}

TEST(JobsTest, FinetuneWritesTheRunDirectoryContract) {
  std::ostringstream log;
  const auto out = temp_dir("finetune");
  auto cfg = Config::resolve(finetune_params(), "", small_run(out));
  auto summary = run_finetune(cfg, JobIO{log, false});

  // config.json: every key of the table, with the reward resolved to its full spec.
  auto config = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(config.size(), finetune_params().params().size());
  EXPECT_EQ(config["reward"]["type"], "bump");
  EXPECT_EQ(config["reward"]["center"], nlohmann::json::array({4.0, 0.0}));
  // The resolved config reproduces the run's settings when read back as a config file.
  auto again = Config::resolve(finetune_params(), out + "/config.json", {});
  EXPECT_EQ(again.values(), config);

  // metrics.jsonl: one line per step, plus evaluations at 0, 5, 10 and 12.
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  int steps = 0, evals = 0;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("step")) {
      ++steps;
      EXPECT_EQ(j["step"], steps);
      for (const char* k : {"seconds", "reward_mean", "loss", "grad_norm", "nfe", "reward_evals"})
        EXPECT_TRUE(j.contains(k)) << k;
    } else {
      ++evals;
      EXPECT_TRUE(j.contains("eval_step") && j.contains("reward") && j.contains("distance"));
    }
  }
  EXPECT_EQ(steps, 12);
  EXPECT_EQ(evals, 4);

  // summary.json: the documented keys.
  auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
  for (const char* k : {"method", "task", "steps", "seconds", "ms_per_step", "reward_before", "reward_after",
                        "reward_optimal", "tilt_distance_before", "tilt_distance_after"})
    EXPECT_TRUE(s.contains(k)) << k;
  EXPECT_EQ(s["method"], "ram");
  EXPECT_EQ(s["task"], "ring");
  EXPECT_EQ(s["nfe"], 12 * 5);            // 12 rollouts of 5 Euler steps
  EXPECT_EQ(s["reward_evals"], 12 * 16);  // 12 steps of 16 endpoints
  EXPECT_EQ(s, summary);
  EXPECT_TRUE(is_png(out + "/plots/samples.png"));
  EXPECT_TRUE(is_png(out + "/plots/reward.png"));
  EXPECT_TRUE(is_png(out + "/plots/distance.png"));

  // The checkpoint evaluates to the same numbers under `eval` (same seed, same evaluation noise).
  std::ostringstream elog;
  auto ecfg = Config::resolve(eval_params(), "",
                              {{"checkpoint", out + "/checkpoints/final.safetensors"}, {"eval_samples", "300"},
                               {"eval_pool", "1000"}, {"eval_steps", "10"}});
  auto e = run_eval(ecfg, JobIO{elog, false});
  EXPECT_NEAR(e["reward_model"].get<double>(), s["reward_after"].get<double>(), 1e-6);
  EXPECT_NEAR(e["reward_reference"].get<double>(), s["reward_before"].get<double>(), 1e-6);
  EXPECT_NEAR(e["reward_optimal"].get<double>(), s["reward_optimal"].get<double>(), 1e-6);

  // `sample` writes one CSV row per sample.
  auto csv = out + "/samples.csv";
  auto scfg = Config::resolve(sample_params(), "",
                              {{"checkpoint", out + "/checkpoints/final.safetensors"}, {"n", "37"}, {"out", csv}});
  run_sample(scfg, JobIO{elog, false});
  std::ifstream in(csv);
  int rows = 0;
  while (std::getline(in, line)) {
    ++rows;
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), 1);
  }
  EXPECT_EQ(rows, 37);

  // A second run into the same directory is refused without --overwrite, and keeps the first intact.
  EXPECT_THROW(run_finetune(cfg, JobIO{log, false}), IOError);
  EXPECT_TRUE(fs::exists(out + "/summary.json"));
}

TEST(JobsTest, BadInputFailsBeforeAnythingIsWritten) {
  std::ostringstream log;
  const auto out = temp_dir("bad");
  auto args = small_run(out);
  args.push_back({"reward", "linear"});  // a linear reward has no 'scale'
  args.push_back({"reward_scale", "2"});
  auto cfg = Config::resolve(finetune_params(), "", args);
  EXPECT_THROW(run_finetune(cfg, JobIO{log, false}), ConfigError);
  EXPECT_FALSE(fs::exists(out));
  auto cfg2 = Config::resolve(finetune_params(), "", {{"out", out}, {"task", "mixture"}});
  EXPECT_THROW(run_finetune(cfg2, JobIO{log, false}), ConfigError);  // mixture needs its parameters
  EXPECT_FALSE(fs::exists(out));
}

TEST(JobsTest, OverwriteRefusesADirectoryThatIsNotARun) {
  const auto out = temp_dir("notrun");
  fs::create_directories(out);
  std::ofstream(out + "/precious.txt") << "keep me";
  std::ostringstream log;
  auto args = small_run(out);
  args.push_back({"overwrite", "true"});
  EXPECT_THROW(run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false}), IOError);
  EXPECT_TRUE(fs::exists(out + "/precious.txt"));
}

TEST(JobsTest, PretrainCheckpointServesAsBase) {
  std::ostringstream log;
  const auto out = temp_dir("pretrain");
  auto p = run_pretrain(Config::resolve(pretrain_params(), "",
                                        {{"out", out}, {"task", "gauss2d"}, {"pretrain_steps", "800"},
                                         {"eval_samples", "200"}, {"eval_steps", "10"}}),
                        JobIO{log, false});
  EXPECT_EQ(p["task"], "gauss2d");
  EXPECT_TRUE(is_png(out + "/plots/samples.png"));
  const auto run = temp_dir("from_base");
  auto args = small_run(run);
  args.push_back({"task", "gauss2d"});
  args.push_back({"base", out + "/checkpoints/base.safetensors"});
  args.push_back({"reward", "quadratic"});
  args.push_back({"reward_center", "2,0"});
  auto s = run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
  // A quadratic reward on Gaussian data has a closed-form optimum, reported beside the pool estimate.
  ASSERT_TRUE(s["reward_optimal_closed_form"].is_number());
  EXPECT_NEAR(s["reward_optimal_closed_form"].get<double>(), s["reward_optimal"].get<double>(), 0.1);
}

}  // namespace
}  // namespace ramflow
