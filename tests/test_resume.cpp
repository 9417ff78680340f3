// Runs that last: training checkpoints hold the whole state, and N steps, a resume, and N more
// steps equal 2N straight steps bit for bit (every checkpoint tensor and every metric but
// wall-clock seconds), for every registered method; checkpoint rotation; a stop request; compare
// --resume.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/checkpoint.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/method.h"
#include "ramflow/stop.h"
#include "ramflow/training_checkpoint.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

std::string temp_dir(const std::string& name) { return testing::fresh_temp_dir("resume_" + name); }

using Flags = std::vector<std::pair<std::string, std::string>>;

// A small ring run of `method`: a tiny MLP, few samples; stages short enough that ram-anneal and
// ram-tilt change stage (and freeze a model) before and after the resume point; an evaluation EMA,
// so that every kind of state is in play.
Flags tiny_run(const std::string& method, const std::string& out, int64_t steps) {
  Flags f = {{"out", out},
             {"method", method},
             {"cache_dir", testing::process_cache_dir()},
             {"model", R"({"type": "mlp", "dim": 2, "hidden": 16})"},
             {"pretrain_steps", "100"},
             {"steps", std::to_string(steps)},
             {"group_size", "8"},
             {"rollout_steps", "4"},
             {"eval_every", "2"},
             {"eval_samples", "40"},
             {"eval_pool", "200"},
             {"eval_curve_samples", "40"},
             {"eval_steps", "4"},
             {"eval_kl_samples", "4"},
             {"eval_kl_steps", "4"},
             {"eval_ema", "0.5"},
             {"checkpoint_every", "2"}};
  if (method == "ram-anneal")
    f.insert(f.end(), {{"anneal_stages", "3"}, {"anneal_stage_steps", "2"}});
  if (method == "ram-tilt") f.insert(f.end(), {{"tilt_stages", "3"}, {"tilt_stage_steps", "2"}});
  return f;
}

class ResumeEveryMethod : public ::testing::TestWithParam<std::string> {};

TEST_P(ResumeEveryMethod, NStepsResumeNStepsEqual2NStraight) {
  const std::string method = GetParam();
  std::ostringstream log;
  const auto split = temp_dir("split_" + method), straight = temp_dir("straight_" + method);
  run_finetune(Config::resolve(finetune_params(), "", tiny_run(method, split, 3)),
               JobIO{log, false});
  EXPECT_TRUE(fs::exists(
      split + "/checkpoints/step-00000003.safetensors"));  // the end of a run is a checkpoint
  auto resumed =
      run_finetune(Config::resolve(finetune_params(), "", {{"resume", split}, {"steps", "6"}}),
                   JobIO{log, false});
  run_finetune(Config::resolve(finetune_params(), "", tiny_run(method, straight, 6)),
               JobIO{log, false});
  EXPECT_EQ(testing::metrics_without_seconds(split), testing::metrics_without_seconds(straight));
  testing::expect_same_checkpoint(split + "/checkpoints/step-00000006.safetensors",
                                  straight + "/checkpoints/step-00000006.safetensors");
  const auto final_a = load_safetensors(split + "/checkpoints/final.safetensors");
  const auto final_b = load_safetensors(straight + "/checkpoints/final.safetensors");
  ASSERT_EQ(final_a.tensors.size(), final_b.tensors.size());
  for (size_t i = 0; i < final_a.tensors.size(); ++i)
    EXPECT_TRUE(torch::equal(final_a.tensors[i].second, final_b.tensors[i].second))
        << final_a.tensors[i].first;
  EXPECT_EQ(resumed["steps"], 6);
  EXPECT_TRUE(fs::exists(split + "/summary.json"));
}

INSTANTIATE_TEST_SUITE_P(AllMethods, ResumeEveryMethod, ::testing::ValuesIn(methods().names()),
                         testing::param_name);

TEST(Resume, RefusesAChangedKeyAndAMissingRun) {
  std::ostringstream log;
  const auto run = temp_dir("refuse");
  run_finetune(Config::resolve(finetune_params(), "", tiny_run("ram", run, 2)), JobIO{log, false});
  try {
    run_finetune(Config::resolve(finetune_params(), "", {{"resume", run}, {"lr", "0.5"}}),
                 JobIO{log, false});
    FAIL() << "a changed --lr was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--lr 0.5 differs from the run's 0.003"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(run_finetune(Config::resolve(finetune_params(), "", {{"resume", run + "-nope"}}),
                            JobIO{log, false}),
               InputError);
  // Without any training checkpoint (and unfinished): a clear InputError, not a fresh start.
  fs::remove(run + "/summary.json");
  for (const auto& f : fs::directory_iterator(run + "/checkpoints"))
    if (f.path().filename().string().rfind("step-", 0) == 0) fs::remove(f.path());
  try {
    run_finetune(Config::resolve(finetune_params(), "", {{"resume", run}}), JobIO{log, false});
    FAIL() << "a run without checkpoints was resumed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no training checkpoint"), std::string::npos) << e.what();
  }
}

TEST(Resume, AFinishedRunIsLeftAloneAndARunNeverGoesBack) {
  std::ostringstream log;
  const auto run = temp_dir("finished");
  run_finetune(Config::resolve(finetune_params(), "", tiny_run("ram", run, 4)), JobIO{log, false});
  auto contents = [&] {
    std::vector<std::string> files;
    for (const char* name : {"/metrics.jsonl", "/config.json", "/summary.json"})
      files.push_back(read_file(run + name));
    return files;
  };
  const auto before = contents();
  // A plain --resume of a finished run: its summary back, nothing written.
  std::ostringstream said;
  const auto again =
      run_finetune(Config::resolve(finetune_params(), "", {{"resume", run}}), JobIO{said, false});
  EXPECT_EQ(again["steps"], 4);
  EXPECT_NE(said.str().find(": finished at step 4; nothing to do"), std::string::npos)
      << said.str();
  EXPECT_EQ(contents(), before);
  // Fewer steps than the run made: refused before anything is written.
  try {
    run_finetune(Config::resolve(finetune_params(), "", {{"resume", run}, {"steps", "2"}}),
                 JobIO{log, false});
    FAIL() << "--steps 2 was accepted for a run that finished at step 4";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--steps 2: " + run + " finished at step 4"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(contents(), before);
  // An unfinished run (no summary) whose latest checkpoint is at step 4.
  fs::remove(run + "/summary.json");
  try {
    run_finetune(Config::resolve(finetune_params(), "", {{"resume", run}, {"steps", "2"}}),
                 JobIO{log, false});
    FAIL() << "--steps 2 was accepted for a run with a checkpoint at step 4";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("has a checkpoint at step 4"), std::string::npos)
        << e.what();
  }
}

TEST(CheckpointSeries, KeepsTheNewestAndPointsLatestAtThem) {
  const auto dir = temp_dir("series");
  CheckpointSeries series(dir, 2);
  for (int64_t step : {1, 2, 3, 4})
    series.write(step, [](const std::string& path) { write_file_atomic(path, "x"); });
  EXPECT_EQ(series.steps(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(series.latest(), series.path(4));
  EXPECT_EQ(read_file(dir + "/latest"), "step-00000004.safetensors\n");
  // A pointer to a file that is gone (a kill between two writes): the newest file on disk.
  write_file_atomic(dir + "/latest", "step-00000009.safetensors\n");
  EXPECT_EQ(series.latest(), series.path(4));
  // Leftovers of an interrupted write are removed when the series is opened again.
  write_file_atomic(dir + "/step-00000005.safetensors.tmp-123", "partial");
  CheckpointSeries again(dir, 2);
  EXPECT_FALSE(fs::exists(dir + "/step-00000005.safetensors.tmp-123"));
  EXPECT_EQ(again.steps(), (std::vector<int64_t>{3, 4}));
}

// A stop request (what SIGINT and SIGTERM do) ends the run after the current step with a checkpoint
// and an Interrupted error that says how to continue; the continued run equals the straight one.
TEST(Resume, AStopRequestCheckpointsAndTheRunContinues) {
  std::ostringstream log;
  const auto run = temp_dir("stop"), straight = temp_dir("stop_straight");
  request_stop(SIGTERM);
  try {
    run_finetune(Config::resolve(finetune_params(), "", tiny_run("ram", run, 4)),
                 JobIO{log, false});
    clear_stop();
    FAIL() << "the stop request was ignored";
  } catch (const Interrupted& e) {
    clear_stop();
    EXPECT_EQ(e.signal(), SIGTERM);
    EXPECT_NE(std::string(e.what()).find("continue with: ramflow finetune --resume " + run),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(run + "/summary.json"));
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step-00000000.safetensors"));
  run_finetune(Config::resolve(finetune_params(), "", {{"resume", run}}), JobIO{log, false});
  run_finetune(Config::resolve(finetune_params(), "", tiny_run("ram", straight, 4)),
               JobIO{log, false});
  EXPECT_EQ(testing::metrics_without_seconds(run), testing::metrics_without_seconds(straight));
  testing::expect_same_checkpoint(run + "/checkpoints/step-00000004.safetensors",
                                  straight + "/checkpoints/step-00000004.safetensors");
}

// compare --resume: finished runs are reused as they are; with more steps each run continues from
// its checkpoint and ends where a straight comparison of that length ends.
TEST(Resume, CompareReusesFinishedRunsAndContinuesTheRest) {
  std::ostringstream log;
  auto flags = [](const std::string& out, int64_t steps) {
    Flags f = {{"out", out},
               {"methods", "ram,nft"},
               {"seeds", "1"},
               {"target_reward", "0.5"},
               {"jobs", "1"},
               {"cache_dir", testing::process_cache_dir()},
               {"pretrain_steps", "100"},
               {"model", R"({"type": "mlp", "dim": 2, "hidden": 16})"},
               {"group_size", "8"},
               {"rollout_steps", "4"},
               {"eval_every", "2"},
               {"eval_samples", "40"},
               {"eval_pool", "200"},
               {"eval_curve_samples", "40"},
               {"eval_steps", "4"},
               {"eval_kl_samples", "4"},
               {"eval_kl_steps", "4"},
               {"steps", std::to_string(steps)}};
    return f;
  };
  const auto split = temp_dir("compare_split"), straight = temp_dir("compare_straight");
  run_compare(Config::resolve(compare_params(), "", flags(split, 3)), JobIO{log, false});
  std::ostringstream again;
  run_compare(Config::resolve(compare_params(), "", {{"resume", split}}), JobIO{again, false});
  EXPECT_NE(again.str().find("ram seed 0: finished before, reused"), std::string::npos)
      << again.str();
  EXPECT_NE(again.str().find("nft seed 0: finished before, reused"), std::string::npos)
      << again.str();
  run_compare(Config::resolve(compare_params(), "", {{"resume", split}, {"steps", "6"}}),
              JobIO{log, false});
  run_compare(Config::resolve(compare_params(), "", flags(straight, 6)), JobIO{log, false});
  const auto a = nlohmann::json::parse(read_file(split + "/report.json"));
  const auto b = nlohmann::json::parse(read_file(straight + "/report.json"));
  ASSERT_EQ(a["runs"].size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    for (const char* key : {"step", "nfe_total", "reward_evals", "reward", "distance",
                            "distance_from_base", "diversity", "kl_to_base"})
      EXPECT_EQ(a["runs"][i][key], b["runs"][i][key]) << a["runs"][i]["variant"] << " " << key;
  for (const char* run : {"ram-seed0", "nft-seed0"}) {
    EXPECT_EQ(testing::metrics_without_seconds(split + "/runs/" + run),
              testing::metrics_without_seconds(straight + "/runs/" + run))
        << run;
    testing::expect_same_checkpoint(
        split + "/runs/" + run + "/checkpoints/step-00000006.safetensors",
        straight + "/runs/" + run + "/checkpoints/step-00000006.safetensors");
  }
}

}  // namespace
}  // namespace ramflow
