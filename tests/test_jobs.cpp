// End-to-end jobs: the run-directory contract, consistency between finetune / eval / sample, and
// bad input that must leave nothing half-written.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/checkpoint.h"
#include "ramflow/decoder.h"
#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/method.h"
#include "ramflow/safetensors.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

std::string temp_dir(const std::string& name) { return testing::fresh_temp_dir("jobs_" + name); }

std::vector<std::pair<std::string, std::string>> small_run(const std::string& out) {
  return {{"out", out},
          {"cache_dir", testing::process_cache_dir()},
          {"pretrain_steps", "300"},
          {"steps", "12"},
          {"group_size", "16"},
          {"draws", "2"},
          {"eval_every", "5"},
          {"eval_samples", "300"},
          {"eval_pool", "1000"},
          {"eval_curve_samples", "100"},
          {"eval_steps", "10"},
          {"rollout_steps", "5"}};
}

bool is_png(const std::string& path) {
  auto bytes = read_file(path);
  return bytes.size() > 8 && bytes.compare(1, 3, "PNG") == 0;
}

TEST(JobsTest, FinetuneWritesTheRunDirectoryContract) {
  std::ostringstream log, results;
  const auto out = temp_dir("finetune");
  auto cfg = Config::resolve(finetune_params(), "", small_run(out));
  auto summary = run_finetune(cfg, JobIO{log, false, &results});
  // The results table on `out` (the tool's stdout), progress and notes on `log` (its stderr).
  EXPECT_EQ(results.str().rfind("final evaluation: ", 0), 0u) << results.str();
  EXPECT_NE(results.str().find("fraction of the way to reward_optimal"), std::string::npos);
  EXPECT_NE(results.str().find("run directory: " + out), std::string::npos);
  EXPECT_EQ(log.str().find("final evaluation"), std::string::npos);
  // The table's columns line up on the screen, "±" (two bytes) included; no trailing spaces.
  {
    std::istringstream in(results.str());
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    auto column_of = [](const std::string& line, const std::string& cell) {
      const size_t at = line.rfind(cell);
      size_t chars = 0;  // characters before it
      for (size_t i = 0; i < at && at != std::string::npos; ++i)
        chars += (static_cast<unsigned char>(line[i]) & 0xC0) != 0x80;
      return at == std::string::npos ? std::string::npos : chars;
    };
    ASSERT_GE(lines.size(), 6u);
    const size_t target = column_of(lines[1], "exact target");
    ASSERT_NE(target, std::string::npos) << lines[1];
    for (size_t i = 3; i <= 5; ++i) {
      const size_t last = lines[i].find_last_of(' ');
      EXPECT_EQ(column_of(lines[i], lines[i].substr(last + 1)), target) << lines[i];
    }
    // The KL with its standard error, or "n/a (...)" when the estimate says nothing.
    EXPECT_TRUE(lines[5].find(" ± ") != std::string::npos ||
                lines[5].find("n/a (") != std::string::npos)
        << lines[5];
    for (const auto& l : lines) EXPECT_TRUE(l.empty() || l.back() != ' ') << "'" << l << "'";
  }
  EXPECT_NE(log.str().find("finetune 12/12 100%"), std::string::npos) << log.str();

  // config.json: every key of the table, with the reward resolved to its full spec.
  auto config = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(config.size(), finetune_params().params().size());
  EXPECT_EQ(config["reward"]["type"], "bump");
  EXPECT_EQ(config["reward"]["center"], nlohmann::json::array({4.0, 0.0}));
  // The resolved config reproduces the run's settings when read back as a config file, except where
  // the run writes: --out is taken from flags only.
  auto again = Config::resolve(finetune_params(), out + "/config.json", {});
  EXPECT_TRUE(again.raw("out").is_null());
  auto expected = config;
  expected["out"] = nullptr;
  EXPECT_EQ(again.values(), expected);

  // metrics.jsonl: one line per step, plus evaluations at 0, 5, 10 and 12 (the last the final
  // evaluation).
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  int steps = 0, evals = 0;
  nlohmann::json final_line;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("step")) {
      ++steps;
      EXPECT_EQ(j["step"], steps);
      for (const char* k : {"seconds", "reward_mean", "loss", "grad_norm", "nfe", "nfe_train",
                            "nfe_total", "reward_evals"})
        EXPECT_TRUE(j.contains(k)) << k;
      // Network evaluations per endpoint so far: rollouts (nfe), losses (RAM: policy and reference
      // at K = 2).
      EXPECT_EQ(j["nfe"], 5 * steps);
      EXPECT_DOUBLE_EQ(j["nfe_train"].get<double>(), 2.0 * 2 * steps);
      EXPECT_DOUBLE_EQ(j["nfe_total"].get<double>(),
                       j["nfe"].get<double>() + j["nfe_train"].get<double>());
    } else {
      ++evals;
      // The one layout of evaluation lines (finetune and compare).
      for (const char* k :
           {"eval_step", "samples", "seconds", "nfe", "nfe_train", "nfe_total", "reward_evals",
            "reward", "reward_std", "distance", "distance_from_base", "diversity"})
        EXPECT_TRUE(j.contains(k)) << k;
      EXPECT_EQ(j["samples"], j.value("final", false) ? 300 : 100);
      if (j["eval_step"] == 0) {
        EXPECT_EQ(j["distance_from_base"], 0.0);
      }
      if (j.value("final", false)) final_line = j;
    }
  }
  EXPECT_EQ(steps, 12);
  EXPECT_EQ(evals, 4);
  ASSERT_TRUE(final_line.is_object());
  EXPECT_EQ(final_line["eval_step"], 12);

  // summary.json: the documented keys.
  auto s = nlohmann::json::parse(read_file(out + "/summary.json"));
  for (const char* k :
       {"method", "task", "steps", "seconds", "ms_per_step", "reward_before", "reward_after",
        "reward_optimal", "tilt_distance_before", "tilt_distance_after"})
    EXPECT_TRUE(s.contains(k)) << k;
  EXPECT_EQ(s["method"], "ram");
  EXPECT_EQ(s["task"], "ring");
  EXPECT_EQ(s["nfe"], 12 * 5);  // 12 rollouts of 5 Euler steps
  EXPECT_DOUBLE_EQ(s["nfe_total"].get<double>(),
                   12 * 5 + 12 * 2.0 * 2);  // and 12 losses of 2 models at K = 2
  // The final evaluation line is the summary's "after" evaluation, not a smaller one.
  EXPECT_EQ(final_line["reward"], s["reward_after"]);
  EXPECT_EQ(final_line["kl_to_base"], s["kl_to_base"]);
  EXPECT_EQ(s["reward_evals"], 12 * 16);  // 12 steps of 16 endpoints
  EXPECT_EQ(s, summary);
  EXPECT_TRUE(is_png(out + "/plots/samples.png"));
  EXPECT_TRUE(is_png(out + "/plots/reward.png"));
  EXPECT_TRUE(is_png(out + "/plots/distance.png"));
  // The samples of each evaluation (steps 0, 5, 10 and the final 12) and report.html, which
  // carries them and the curves' data (the browser test, tests/browser_test.sh, draws it).
  for (const char* step : {"00000000", "00000005", "00000010", "00000012"})
    EXPECT_TRUE(is_png(out + "/plots/steps/step-" + std::string(step) + ".png")) << step;
  const std::string html = read_file(out + "/report.html");
  EXPECT_EQ(html.rfind("<!doctype html>", 0), 0u);
  EXPECT_NE(html.find("finished: 12 steps"), std::string::npos);
  EXPECT_NE(html.find("var REPORT = "), std::string::npos);
  EXPECT_EQ(html.find("http-equiv=\"refresh\""), std::string::npos);  // finished: no reload

  // The checkpoint evaluates to the same numbers under `eval` (same seed, same evaluation noise).
  std::ostringstream elog;
  auto ecfg = Config::resolve(eval_params(), "",
                              {{"checkpoint", out + "/checkpoints/final.safetensors"},
                               {"eval_samples", "300"},
                               {"eval_pool", "1000"},
                               {"eval_steps", "10"}});
  auto e = run_eval(ecfg, JobIO{elog, false});
  EXPECT_NEAR(e["reward_model"].get<double>(), s["reward_after"].get<double>(), 1e-6);
  EXPECT_NEAR(e["reward_reference"].get<double>(), s["reward_before"].get<double>(), 1e-6);
  EXPECT_NEAR(e["reward_optimal"].get<double>(), s["reward_optimal"].get<double>(), 1e-6);

  // `sample` writes one CSV row per sample, into folders it creates.
  auto csv = out + "/new/folder/samples.csv";
  auto scfg = Config::resolve(
      sample_params(), "",
      {{"checkpoint", out + "/checkpoints/final.safetensors"}, {"n", "37"}, {"out", csv}});
  run_sample(scfg, JobIO{elog, false});
  std::ifstream in(csv);
  int rows = 0;
  while (std::getline(in, line)) {
    ++rows;
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), 1);
  }
  EXPECT_EQ(rows, 37);

  // A second run into the same directory is refused without --overwrite, and keeps the first
  // intact.
  EXPECT_THROW(run_finetune(cfg, JobIO{log, false}), IOError);
  EXPECT_TRUE(fs::exists(out + "/summary.json"));
}

// --eval reward: the same training, evaluated without the exact target's pool: the rewards agree
// with the exact-target run's (same fixed noise), the distances are absent. --eval none: training
// only.
TEST(JobsTest, EvaluationKindsRewardAndNone) {
  std::ostringstream log;
  const auto exact_dir = temp_dir("eval-exact"), reward_dir = temp_dir("eval-reward"),
             none_dir = temp_dir("eval-none");
  const auto exact =
      run_finetune(Config::resolve(finetune_params(), "", small_run(exact_dir)), JobIO{log, false});
  auto args = small_run(reward_dir);
  args.push_back({"eval", "reward"});
  const auto rw = run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
  EXPECT_EQ(rw["evaluation"], "reward");
  EXPECT_EQ(rw["reward_before"], exact["reward_before"]);
  EXPECT_EQ(rw["reward_after"], exact["reward_after"]);
  EXPECT_EQ(rw["kl_to_base"], exact["kl_to_base"]);
  EXPECT_FALSE(rw.contains("reward_optimal"));
  EXPECT_TRUE(rw["after"]["distance"].is_null());
  std::ifstream metrics(reward_dir + "/metrics.jsonl");
  int evals = 0;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("eval_step")) continue;
    ++evals;
    EXPECT_TRUE(j["distance"].is_null());
    EXPECT_TRUE(j["reward"].is_number());
  }
  EXPECT_EQ(evals, 4);
  EXPECT_FALSE(fs::exists(reward_dir + "/plots/distance.png"));

  args = small_run(none_dir);
  args.push_back({"eval", "none"});
  const auto none = run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
  EXPECT_EQ(none["evaluation"], "none");
  EXPECT_FALSE(none.contains("reward_after"));
  // The same training steps: the last batch's reward is the exact-target run's.
  EXPECT_EQ(none["reward_last_batch"], exact["reward_last_batch"]);
  std::ifstream none_metrics(none_dir + "/metrics.jsonl");
  int steps = 0;
  for (std::string line; std::getline(none_metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_FALSE(j.contains("eval_step"));
    ++steps;
  }
  EXPECT_EQ(steps, 12);
  EXPECT_TRUE(fs::exists(none_dir + "/checkpoints/final.safetensors"));
}

// --decoder: the run scores decoded samples; its checkpoints record the decoder, from which `eval`
// scores the same decoded samples and `sample` writes them (or the latents with --latents). A
// decoder that does not take the task's samples is refused before anything is written.
TEST(JobsTest, ADecoderIsPartOfTheRunAndOfItsCheckpoints) {
  std::ostringstream log;
  const auto out = temp_dir("decoder");
  const nlohmann::json spec = {{"type", "mlp"}, {"latent_dim", 2}, {"dim", 3}, {"hidden", 8}};
  auto args = small_run(out);
  args.push_back({"decoder", spec.dump()});
  args.push_back({"decoder_seed", "5"});
  args.push_back({"reward", R"({"type": "bump", "center": [1, 0, 0], "scale": 2})"});
  const auto s = run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
  const std::string ckpt = out + "/checkpoints/final.safetensors";
  const auto meta = read_checkpoint_meta(ckpt);
  ASSERT_TRUE(meta.contains("decoder"));
  EXPECT_EQ(meta["decoder"]["spec"], spec);
  EXPECT_EQ(meta["decoder"]["seed"], 5);
  const DecoderPtr decoder = decoder_from_meta(meta);
  ASSERT_TRUE(decoder);

  std::ostringstream elog;
  const auto e = run_eval(Config::resolve(eval_params(), "",
                                          {{"checkpoint", ckpt},
                                           {"eval_samples", "300"},
                                           {"eval_pool", "1000"},
                                           {"eval_steps", "10"}}),
                          JobIO{elog, false});
  EXPECT_NEAR(e["reward_model"].get<double>(), s["reward_after"].get<double>(), 1e-6);

  const auto decoded = out + "/decoded.safetensors", latents = out + "/latents.safetensors";
  run_sample(
      Config::resolve(sample_params(), "", {{"checkpoint", ckpt}, {"n", "20"}, {"out", decoded}}),
      JobIO{elog, false});
  run_sample(
      Config::resolve(sample_params(), "",
                      {{"checkpoint", ckpt}, {"n", "20"}, {"out", latents}, {"latents", "true"}}),
      JobIO{elog, false});
  const auto xs = load_safetensors(decoded).tensors, zs = load_safetensors(latents).tensors;
  ASSERT_TRUE(find_tensor(xs, "samples") && find_tensor(zs, "samples"));
  const torch::Tensor x = *find_tensor(xs, "samples"), z = *find_tensor(zs, "samples");
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{20, 2}));
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{20, 3}));
  EXPECT_TRUE(torch::allclose(x, decode_samples(*decoder, z), 1e-5, 1e-6));

  // Latents of 3 coordinates on the 2-D ring: refused, naming --decoder, before the directory
  // exists.
  const auto bad = temp_dir("decoder_bad");
  auto bad_args = small_run(bad);
  bad_args.push_back({"decoder", R"({"type": "mlp", "latent_dim": 3, "dim": 2})"});
  try {
    run_finetune(Config::resolve(finetune_params(), "", bad_args), JobIO{log, false});
    FAIL() << "a decoder that does not fit the task was accepted";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("--decoder: "), std::string::npos) << err.what();
  }
  EXPECT_FALSE(fs::exists(bad));
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
  // Parts that do not fit together, or a reward server that does not answer: refused before the
  // exact target's pool and before the run directory exists, naming the mismatch.
  auto refused = [&](std::vector<std::pair<std::string, std::string>> extra,
                     const std::string& expected) {
    auto a = small_run(out);
    a.insert(a.end(), extra.begin(), extra.end());
    try {
      run_finetune(Config::resolve(finetune_params(), "", a), JobIO{log, false});
      ADD_FAILURE() << "accepted: " << expected;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << expected;
  };
  refused({{"reward", "remote"}, {"reward_url", "http://127.0.0.1:1/"}, {"reward_retries", "0"}},
          "reward 'remote' on task 'ring' (samples [2, 2]): a probe failed: ");
  refused({{"reward", "classifier"}}, "reward 'classifier' scores the requested class");
  refused({{"base", testing::source("models/fashion_base.safetensors")}},
          "the model does not take task 'ring' samples [1, 2]");
}

TEST(JobsTest, OverwriteRefusesADirectoryThatIsNotARun) {
  const auto out = temp_dir("notrun");
  fs::create_directories(out);
  std::ofstream(out + "/precious.txt") << "keep me";
  std::ostringstream log;
  auto args = small_run(out);
  args.push_back({"overwrite", "true"});
  try {
    run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
    FAIL() << "a directory that is not a run was overwritten";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "refusing to overwrite a directory that is not a ramflow run (no config.json)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::exists(out + "/precious.txt"));
}

TEST(JobsTest, OverwriteReplacesAnEarlierRun) {
  const auto out = temp_dir("rerun");
  std::ostringstream log;
  auto args = small_run(out);
  run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
  std::ofstream(out + "/plots/stale.png") << "from an earlier run";
  args.push_back({"overwrite", "true"});
  run_finetune(Config::resolve(finetune_params(), "", args), JobIO{log, false});
  EXPECT_FALSE(fs::exists(out + "/plots/stale.png"));
  EXPECT_TRUE(fs::exists(out + "/summary.json"));
}

TEST(IOTest, RemoveTreeRemovesEverythingAndFollowsNoLink) {
  const auto root = temp_dir("tree"), outside = temp_dir("outside");
  fs::create_directories(root + "/a/b/c");
  fs::create_directories(outside);
  std::ofstream(root + "/a/b/c/file") << "x";
  std::ofstream(root + "/top") << "y";
  std::ofstream(outside + "/kept") << "z";
  fs::create_directory_symlink(outside, root + "/a/link");
  remove_tree(root);
  EXPECT_FALSE(fs::exists(root));
  EXPECT_TRUE(fs::exists(outside + "/kept"));  // the link went, not what it points to
  EXPECT_NO_THROW(remove_tree(root));          // absent: nothing to do
  remove_tree(outside);
}

TEST(JobsTest, PretrainCheckpointServesAsBase) {
  std::ostringstream log;
  const auto out = temp_dir("pretrain");
  auto p = run_pretrain(Config::resolve(pretrain_params(), "",
                                        {{"out", out},
                                         {"task", "gauss2d"},
                                         {"pretrain_steps", "800"},
                                         {"eval_samples", "200"},
                                         {"eval_steps", "10"}}),
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
  // A quadratic reward on Gaussian data has a closed-form optimum, reported beside the pool
  // estimate.
  ASSERT_TRUE(s["reward_optimal_closed_form"].is_number());
  EXPECT_NEAR(s["reward_optimal_closed_form"].get<double>(), s["reward_optimal"].get<double>(),
              0.1);
}

// Pretraining continues bit for bit: 20 steps, then --resume to 40, equals 40 straight (the base
// model, the EMA, and the loss lines of metrics.jsonl).
TEST(JobsTest, PretrainResumesBitForBit) {
  std::ostringstream log;
  auto pretrain = [&](const std::vector<std::pair<std::string, std::string>>& args) {
    return run_pretrain(Config::resolve(pretrain_params(), "", args), JobIO{log, false});
  };
  const std::vector<std::pair<std::string, std::string>> common = {
      {"task", "ring-prompts"},   {"pretrain_batch", "32"}, {"pretrain_ema", "0.9"},
      {"checkpoint_every", "15"}, {"eval_samples", "50"},   {"eval_steps", "4"}};
  const auto straight = temp_dir("pretrain_straight"), resumed = temp_dir("pretrain_resumed");
  auto args = common;
  args.push_back({"out", straight});
  args.push_back({"pretrain_steps", "40"});
  pretrain(args);
  args = common;
  args.push_back({"out", resumed});
  args.push_back({"pretrain_steps", "20"});
  pretrain(args);
  // Fewer steps than the run has: refused.
  EXPECT_THROW(pretrain({{"resume", resumed}, {"pretrain_steps", "20"}}), ConfigError);
  // Another setting than --pretrain-steps, --checkpoint-every or --threads: refused.
  EXPECT_THROW(pretrain({{"resume", resumed}, {"pretrain_steps", "40"}, {"pretrain_lr", "0.1"}}),
               ConfigError);
  const auto summary = pretrain({{"resume", resumed}, {"pretrain_steps", "40"}});
  EXPECT_EQ(summary["steps"], 40);
  const auto a = load_safetensors(straight + "/checkpoints/base.safetensors").tensors;
  const auto b = load_safetensors(resumed + "/checkpoints/base.safetensors").tensors;
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
  auto losses = [](const std::string& run) {
    std::vector<std::pair<int64_t, double>> out;
    std::ifstream in(run + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) out.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
    }
    return out;
  };
  EXPECT_EQ(losses(straight), losses(resumed));
  EXPECT_EQ(losses(straight).size(), 4u);
}

}  // namespace
}  // namespace ramflow

namespace ramflow {
namespace {

// A reduced `ramflow compare` end to end: every method, two seeds, a few steps, two runs at a time,
// with a sweep of m (for the methods that read it) and of Flow-GRPO's KL weight.
TEST(JobsTest, CompareRunsEveryMethodAndWritesTheReport) {
  std::ostringstream log;
  const auto out = temp_dir("compare");
  auto args = small_run(out);
  for (const char* drop : {"eval_every"})
    args.erase(
        std::remove_if(args.begin(), args.end(), [&](const auto& kv) { return kv.first == drop; }),
        args.end());
  const auto& all = methods().names();
  std::string list;
  for (const auto& m : all) list += (list.empty() ? "" : ",") + m;
  args.push_back({"methods", list});
  args.push_back({"seeds", "2"});
  args.push_back({"eval_every", "6"});
  args.push_back({"eval_kl_samples", "64"});
  args.push_back({"jobs", "2"});
  args.push_back({"sweep", "multiplier=2,5; grpo_kl=0.01,0.2"});
  auto summary = run_compare(Config::resolve(compare_params(), "", args), JobIO{log, false});
  EXPECT_EQ(summary["failed_runs"], 0) << log.str();
  EXPECT_NE(read_file(out + "/report.html").find("ramflow compare: "), std::string::npos);
  // The table's footnotes say what a negative distance to p* and a missing KL mean.
  const std::string md = read_file(out + "/report.md");
  EXPECT_NE(md.find("distance to p* = the energy distance's unbiased estimate"), std::string::npos);
  EXPECT_NE(md.find("is left out of the mean"), std::string::npos);
  auto report = nlohmann::json::parse(read_file(out + "/report.json"));
  // Variants: two values of m for every method that reads it, two KL weights for flow-grpo, one
  // otherwise.
  size_t variants = 0;
  for (const auto& m : all) {
    const bool reads_m = method_keys(m, compare_params()).count("multiplier") > 0;
    const size_t n = reads_m || m == "flow-grpo" ? 2 : 1;
    variants += n;
    size_t found = 0;
    for (const auto& [label, entry] : report["methods"].items())
      if (entry["method"] == m) {
        ++found;
        EXPECT_EQ(entry["runs"], 2) << label;
        // The KL's mean over the runs whose estimate is reliable (KLEstimate::reliable): each run's
        // own estimate is in `runs`.
        EXPECT_LE(entry["kl_to_base"]["n"].get<int64_t>(), 2) << label;
        for (const char* key : {"reward_final", "distance_final"})
          EXPECT_TRUE(entry[key]["mean"].is_number()) << label;
        EXPECT_EQ(entry["sweep"].size(), n == 2 ? 1u : 0u) << label;
        EXPECT_NE(read_file(out + "/report.md").find("| " + label + " |"), std::string::npos)
            << label;
      }
    EXPECT_EQ(found, n) << m;
  }
  EXPECT_EQ(report["methods"]["ram multiplier=2.0"]["sweep"]["multiplier"], 2.0);
  EXPECT_EQ(report["methods"]["ram multiplier=2.0"]["options"]["multiplier"], 2.0);
  ASSERT_EQ(report["runs"].size(), 2 * variants);
  for (const auto& r : report["runs"]) {
    EXPECT_EQ(r["error"], "");
    // Evaluations at steps 0, 6 and 12; the clock and the evaluation counts only grow.
    EXPECT_EQ(r["step"], nlohmann::json::array({0.0, 6.0, 12.0})) << r["variant"];
    for (const char* key : {"seconds", "nfe_total", "reward_evals"})
      for (size_t i = 1; i < r.at(key).size(); ++i)
        EXPECT_GT(r[key][i].get<double>(), r[key][i - 1].get<double>()) << key;
    // Every run starts from the shared base model on the shared evaluation noise.
    EXPECT_DOUBLE_EQ(r["reward"][0].get<double>(), report["reward_base"].get<double>());
    EXPECT_EQ(r["distance_from_base"][0].get<double>(), 0.0);
    EXPECT_TRUE(r["kl_to_base"].is_number()) << r["variant"];
    EXPECT_TRUE(r["kl_to_base_se"].is_number()) << r["variant"];
  }
  // The two seeds of a method differ; the target is the mean peak of the Flow-GRPO variant that
  // runs with its preset's KL weight (0.2), listed second in the sweep.
  EXPECT_NE(report["runs"][0]["reward"][2], report["runs"][1]["reward"][2]);
  EXPECT_EQ(report["target_source"], "peak of flow-grpo grpo_kl=0.2");
  double peak = 0;
  for (const auto& r : report["runs"])
    if (r["variant"] == "flow-grpo grpo_kl=0.2")
      peak += r["reward"].get<std::vector<double>>().back() / 2;
  EXPECT_LE(peak, report["target_reward"].get<double>() + 1e-12);
  // The exact frontier: reward and KL of p_ref exp(m r) both grow with m (d E_m[r] / dm =
  // Var_m(r)), from the base (m = 0: KL 0) upward.
  const auto& front = report["frontier"];
  ASSERT_GT(front.size(), 5u);
  EXPECT_EQ(front[0]["kl"].get<double>(), 0.0);
  EXPECT_NEAR(front[0]["reward"].get<double>(), report["reward_base"].get<double>(), 0.05);
  for (size_t i = 1; i < front.size(); ++i) {
    EXPECT_GE(front[i]["reward"].get<double>(), front[i - 1]["reward"].get<double>());
    EXPECT_GE(front[i]["kl"].get<double>(), front[i - 1]["kl"].get<double>() - 1e-12);
  }
  for (const char* plot : {"reward_vs_steps", "reward_vs_seconds", "reward_vs_distance_from_base",
                           "distance_vs_steps", "frontier"})
    EXPECT_TRUE(is_png(out + "/plots/" + plot + ".png")) << plot;
  EXPECT_TRUE(fs::exists(out + "/summary.json"));
}

// Without flow-grpo (the default target method) among --methods, the target is 0.9 of the way from
// the base reward to reward_optimal, and the report says so.
TEST(JobsTest, CompareWithoutTheDefaultTargetMethodAimsAtTheOptimum) {
  std::ostringstream log;
  const auto out = temp_dir("compare_fraction");
  auto args = small_run(out);
  args.push_back({"methods", "ram"});
  args.push_back({"seeds", "1"});
  args.push_back({"eval_kl_samples", "10"});
  run_compare(Config::resolve(compare_params(), "", args), JobIO{log, false});
  auto report = nlohmann::json::parse(read_file(out + "/report.json"));
  EXPECT_EQ(report["target_source"], "0.9 of the way from the base to reward_optimal");
  const double base = report["reward_base"], optimal = report["reward_optimal"];
  EXPECT_NEAR(report["target_reward"].get<double>(), base + 0.9 * (optimal - base), 1e-12);
  EXPECT_NE(log.str().find("target reward "), std::string::npos);
}

// compare --eval reward: no pool, so no distances or optimum; the same runs as with the exact
// target, so the same rewards. Without a reward_optimal, the fraction target is refused before any
// compute.
TEST(JobsTest, CompareWithTheRewardEvaluator) {
  std::ostringstream log;
  const auto exact_dir = temp_dir("compare_exact"), reward_dir = temp_dir("compare_reward");
  auto args = small_run(exact_dir);
  args.push_back({"methods", "ram"});
  args.push_back({"seeds", "1"});
  args.push_back({"eval_kl_samples", "10"});
  args.push_back({"target_reward", "0.5"});
  run_compare(Config::resolve(compare_params(), "", args), JobIO{log, false});
  args[0].second = reward_dir;
  ASSERT_EQ(args[0].first, "out");
  args.push_back({"eval", "reward"});
  run_compare(Config::resolve(compare_params(), "", args), JobIO{log, false});
  const auto a = nlohmann::json::parse(read_file(exact_dir + "/report.json"));
  const auto b = nlohmann::json::parse(read_file(reward_dir + "/report.json"));
  EXPECT_EQ(b["evaluation"], "reward");
  EXPECT_TRUE(b["reward_optimal"].is_null());
  EXPECT_TRUE(b["frontier"].empty());
  EXPECT_EQ(a["runs"][0]["reward"], b["runs"][0]["reward"]);
  EXPECT_EQ(a["runs"][0]["kl_to_base"], b["runs"][0]["kl_to_base"]);
  for (const auto& d : b["runs"][0]["distance"]) EXPECT_TRUE(d.is_null());
  EXPECT_FALSE(fs::exists(reward_dir + "/plots/distance_vs_steps.png"));
  EXPECT_TRUE(fs::exists(reward_dir + "/plots/reward_vs_steps.png"));

  auto no_target = small_run(temp_dir("compare_reward_fraction"));
  no_target.push_back({"methods", "ram"});
  no_target.push_back({"eval", "reward"});
  try {
    run_compare(Config::resolve(compare_params(), "", no_target), JobIO{log, false});
    FAIL() << "a fraction target without the exact target was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "--eval reward: without the exact target there is no reward_optimal"),
              std::string::npos)
        << e.what();
  }
}

TEST(JobsTest, CompareRejectsBadMethodListsBeforeAnyCompute) {
  std::ostringstream log;
  const auto out = temp_dir("compare_bad");
  for (auto [methods, expect] :
       {std::pair{"ram,magic", "unknown method 'magic'"}, std::pair{"ram,ram", "listed twice"},
        std::pair{"ram,nft", "--target-method: 'flow-grpo' is not among"}}) {
    auto args = small_run(out);
    args.push_back({"methods", methods});
    // An explicit target method must be among --methods (without one, the target falls back to 0.9
    // of the way to reward_optimal).
    args.push_back({"target_method", "flow-grpo"});
    try {
      run_compare(Config::resolve(compare_params(), "", args), JobIO{log, false});
      FAIL() << methods;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << methods;
  }
}

}  // namespace
}  // namespace ramflow
