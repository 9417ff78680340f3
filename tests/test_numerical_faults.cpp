// Numerical faults: a non-finite sample is reported as a diverged rollout (with the sampler step),
// not as a reward fault; a non-finite reward, loss or gradient skips the step without touching the
// model; several in a row stop the run with a checkpoint and a clear message.
#include <atomic>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/method.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/ram.h"
#include "ramflow/trainer.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

// A bump reward that returns `bad` (NaN by default) for one sample on its `bad_call`-th call
// (0-based).
class FlakyReward : public Reward {
 public:
  explicit FlakyReward(int bad_call, double bad = std::nan("")) : bad_call_(bad_call), bad_(bad) {}
  torch::Tensor score(const torch::Tensor& x0, const Condition&) const override {
    auto r = torch::exp(-(x0 - 4.0).square().sum(1) / 12.5);
    if (calls_++ == bad_call_) r[1] = bad_;
    return r;
  }
  bool differentiable() const override { return false; }
  nlohmann::json spec() const override { return {{"type", "flaky"}}; }

 private:
  int bad_call_;
  double bad_;
  mutable std::atomic<int> calls_{0};
};

Trainer ram_trainer(VelocityFieldPtr policy, RewardPtr reward) {
  auto base = clone_velocity_field(*policy);
  return Trainer(policy, frozen_copy(*base), std::move(reward), std::make_unique<RAM>(RAMOptions()),
                 TrainerOptions()
                     .sample_shape({2})
                     .group_size(8)
                     .rollout(SampleOptions().steps(6))
                     .lr(1e-3)
                     .seed(1));
}

std::vector<torch::Tensor> weights(VelocityFieldImpl& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model.parameters()) out.push_back(p.detach().clone());
  return out;
}

bool same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

TEST(NumericalFaults, ANonFiniteRewardSkipsTheStepAndLeavesTheModel) {
  auto policy = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json(), 3);
  Trainer trainer = ram_trainer(policy, std::make_shared<FlakyReward>(1));
  EXPECT_TRUE(trainer.step().skipped.empty());
  const auto before = weights(trainer.policy());
  const StepRecord bad = trainer.step();
  EXPECT_NE(bad.skipped.find("step 2: reward 'flaky' returned a non-finite value for sample 1"),
            std::string::npos)
      << bad.skipped;
  EXPECT_TRUE(std::isnan(bad.reward_mean));
  EXPECT_TRUE(same(before, weights(trainer.policy())));  // no update
  EXPECT_EQ(trainer.steps_done(), 2);                    // but the step counts: the next draws anew
  const StepRecord next = trainer.step();
  EXPECT_TRUE(next.skipped.empty()) << next.skipped;
  EXPECT_FALSE(same(before, weights(trainer.policy())));
}

// A finite reward so large that RAM's regression target overflows float32: the loss is non-finite,
// and the step is skipped before the optimiser sees it.
TEST(NumericalFaults, ANonFiniteLossSkipsTheStep) {
  auto policy = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json(), 3);
  Trainer trainer = ram_trainer(policy, std::make_shared<FlakyReward>(0, 3e38));
  const auto before = weights(trainer.policy());
  const StepRecord rec = trainer.step();
  EXPECT_NE(rec.skipped.find("step 1: method 'ram' produced a non-finite loss"), std::string::npos)
      << rec.skipped;
  EXPECT_TRUE(same(before, weights(trainer.policy())));
  EXPECT_TRUE(trainer.step().skipped.empty());
}

TEST(NumericalFaults, ADivergedRolloutIsNamedWithItsSamplerStep) {
  auto policy = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json(), 3);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : policy->parameters())
      p.mul_(1e12);  // a velocity that overflows float32 within steps
  }
  Trainer trainer = ram_trainer(policy, std::make_shared<FlakyReward>(-1));
  const auto before = weights(trainer.policy());
  const StepRecord rec = trainer.step();
  EXPECT_NE(rec.skipped.find("the rollout diverged at sampler step "), std::string::npos)
      << rec.skipped;
  EXPECT_NE(rec.skipped.find(" of 6 (t = "), std::string::npos) << rec.skipped;
  EXPECT_EQ(rec.skipped.find("reward"), std::string::npos)
      << rec.skipped;  // not blamed on the reward
  EXPECT_TRUE(same(before, weights(trainer.policy())));
}

// A run whose model diverges (lr 10): skipped steps are warned about and recorded in metrics.jsonl;
// the third in a row writes a checkpoint and stops with a NumericalError that says so.
TEST(NumericalFaults, SeveralSkippedStepsInARowStopTheRunWithACheckpoint) {
  const auto out = (fs::path(::testing::TempDir()) / "ramflow_diverged").string();
  remove_tree(out);
  std::ostringstream log;
  auto cfg = Config::resolve(finetune_params(), "",
                             {{"out", out},
                              {"lr", "10"},
                              {"max_bad_steps", "3"},
                              {"steps", "50"},
                              {"cache_dir", out + "-cache"},
                              {"model", R"({"type": "mlp", "dim": 2, "hidden": 16})"},
                              {"pretrain_steps", "100"},
                              {"eval_samples", "40"},
                              {"eval_pool", "200"},
                              {"eval_curve_samples", "40"},
                              {"eval_kl_samples", "4"},
                              {"eval_steps", "4"}});
  try {
    run_finetune(cfg, JobIO{log, false});
    FAIL() << "the diverged run did not stop";
  } catch (const NumericalError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("3 steps in a row skipped"), std::string::npos) << what;
    EXPECT_NE(what.find("stopped with checkpoint " + out + "/checkpoints/step-"), std::string::npos)
        << what;
  }
  EXPECT_NE(log.str().find("warning: step "), std::string::npos);
  EXPECT_FALSE(fs::exists(out + "/summary.json"));
  int64_t skipped = 0;
  std::istringstream metrics(read_file(out + "/metrics.jsonl"));
  for (std::string line; std::getline(metrics, line);)
    if (nlohmann::json::parse(line).contains("skipped")) ++skipped;
  EXPECT_EQ(skipped, 3);
  EXPECT_TRUE(fs::exists(out + "/checkpoints/latest"));
}

}  // namespace
}  // namespace ramflow
