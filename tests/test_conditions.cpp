// Conditions: the batch type, the task's ownership of its conditions, the reward protocol's prompt
// text, and a text-conditioned toy task (random context/pooled embeddings per prompt) trained with
// RAM and classifier-free guidance.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/condition.h"
#include "ramflow/evaluator.h"
#include "ramflow/guidance.h"
#include "ramflow/pretrain.h"
#include "ramflow/ram.h"
#include "ramflow/reward.h"
#include "ramflow/reward_protocol.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"

namespace ramflow {
namespace {

// Three rows: ids 4, 5, 6 with a [3] label and a [3, 2, 2] context whose row i is all i.
Condition three_rows() {
  auto context = torch::arange(3, torch::kFloat).view({3, 1, 1}).expand({3, 2, 2}).contiguous();
  return Condition(torch::tensor({4, 5, 6}, torch::kLong),
                   {{"label", torch::tensor({0, 1, 2}, torch::kLong)}, {"context", context}});
}

TEST(Condition, BatchOperationsKeepEveryTensorWithItsId) {
  const Condition c = three_rows();
  EXPECT_EQ(c.size(), 3);
  EXPECT_TRUE(c.has("context"));
  EXPECT_FALSE(c.has("pooled"));
  EXPECT_THROW(c.at("pooled"), c10::Error);
  // Each operation moves the id, the label and the context rows together.
  auto consistent = [](const Condition& d) {
    for (int64_t i = 0; i < d.size(); ++i) {
      const int64_t id = d.id()[i].item<int64_t>();
      if (id == kNullId) continue;
      EXPECT_EQ(d.at("label")[i].item<int64_t>(), id - 4);
      EXPECT_EQ(d.at("context")[i].mean().item<float>(), static_cast<float>(id - 4));
    }
  };
  const auto s = c.slice(1, 3);
  EXPECT_TRUE(torch::equal(s.id(), torch::tensor({5, 6}, torch::kLong)));
  consistent(s);
  const auto picked = c.index_select(torch::tensor({2, 0, 2}, torch::kLong));
  EXPECT_TRUE(torch::equal(picked.id(), torch::tensor({6, 4, 6}, torch::kLong)));
  consistent(picked);
  const auto groups = c.repeat_interleave(2);  // each row twice in a row, as a group shares one
  EXPECT_TRUE(torch::equal(groups.id(), torch::tensor({4, 4, 5, 5, 6, 6}, torch::kLong)));
  EXPECT_EQ(groups.at("context").sizes(), (std::vector<int64_t>{6, 2, 2}));
  consistent(groups);
  const auto both = Condition::cat({c, s});
  EXPECT_TRUE(torch::equal(both.id(), torch::tensor({4, 5, 6, 5, 6}, torch::kLong)));
  consistent(both);
  // where: the null row (one row, broadcast) replaces the masked rows, in every tensor.
  const Condition null(torch::full({1}, kNullId, torch::kLong),
                       {{"label", torch::full({1}, kNullId, torch::kLong)},
                        {"context", torch::full({1, 2, 2}, -7.0f)}});
  const auto dropped = c.where(torch::tensor({false, true, false}), null);
  EXPECT_TRUE(torch::equal(dropped.id(), torch::tensor(std::vector<int64_t>{4, kNullId, 6})));
  EXPECT_EQ(dropped.at("label")[1].item<int64_t>(), kNullId);
  EXPECT_EQ(dropped.at("context")[1].max().item<float>(), -7.0f);
  consistent(dropped);
  EXPECT_TRUE(torch::equal(c.to(torch::kCPU).at("context"), c.at("context")));
  // The empty condition of an unconditional batch stays empty through every operation.
  const Condition none;
  EXPECT_FALSE(none.defined());
  EXPECT_EQ(none.size(), 0);
  EXPECT_FALSE(none.slice(0, 2).defined());
  EXPECT_FALSE(none.repeat_interleave(3).defined());
  EXPECT_FALSE(Condition::cat({none, none}).defined());
  // Rows that do not match, and parts that do not fit, are refused.
  EXPECT_THROW(
      Condition(torch::tensor({1, 2}, torch::kLong), {{"label", torch::zeros({3}, torch::kLong)}}),
      c10::Error);
  EXPECT_THROW(Condition::cat({c, none}), c10::Error);
  EXPECT_THROW(Condition::cat({c, Condition::classes(torch::tensor({1}, torch::kLong))}),
               c10::Error);
}

TEST(Condition, ATaskOwnsItsConditions) {
  const TaskPtr ring = make_task("ring");
  Rng ring_rng(0);
  EXPECT_FALSE(ring->sample_conditions(4, ring_rng).defined());
  EXPECT_FALSE(ring->null_condition().defined());

  const TaskPtr task = make_task("ring-prompts");
  EXPECT_EQ(task->condition_count(), 8);
  EXPECT_EQ(task->condition_text(0), "east or north-east");
  EXPECT_EQ(task->condition_metadata(2)["angles"][0].get<double>(), 90.0);
  Rng rng(3);
  const Condition c = task->sample_conditions(64, rng);
  ASSERT_EQ(c.size(), 64);
  EXPECT_EQ(c.at("context").sizes(), (std::vector<int64_t>{64, 4, 8}));
  EXPECT_EQ(c.at("pooled").sizes(), (std::vector<int64_t>{64, 6}));
  EXPECT_EQ(c.text(0),
            task->condition_text(c.id()[0].item<int64_t>()));  // the text travels with the batch
  // A prompt's embeddings are a function of its id alone; different prompts differ.
  const auto again = task->conditions(c.id());
  EXPECT_TRUE(torch::equal(again.at("context"), c.at("context")));
  const auto two = task->conditions(torch::tensor({1, 2}, torch::kLong));
  EXPECT_FALSE(torch::equal(two.at("pooled")[0], two.at("pooled")[1]));
  // The null condition (the encoded empty prompt) is one row of its own, with no text.
  const Condition null = task->null_condition();
  ASSERT_EQ(null.size(), 1);
  EXPECT_EQ(null.id()[0].item<int64_t>(), kNullId);
  EXPECT_EQ(null.text(0), "");
  for (int64_t k = 0; k < 8; ++k)
    EXPECT_FALSE(torch::equal(null.at("pooled")[0],
                              task->conditions(torch::tensor({k}, torch::kLong)).at("pooled")[0]));
  // Evaluation asks for the prompts in turn; data come with their conditions.
  EXPECT_TRUE(torch::equal(task->evaluation_conditions(10).id(), torch::arange(10).remainder(8)));
  Condition data_cond;
  const auto x = task->sample_data(500, rng, {}, &data_cond);
  ASSERT_EQ(data_cond.size(), 500);
  // Prompt k's data lie on modes k or k + 1 of the ring of radius 4.
  const auto angle = torch::atan2(x.select(1, 1), x.select(1, 0)).to(torch::kDouble);    // [500]
  const auto mode = torch::round(angle / (2 * M_PI / 8)).remainder(8).to(torch::kLong);  // [500]
  const auto offset = (mode - data_cond.id()).remainder(8);
  EXPECT_TRUE(((offset == 0) | (offset == 1)).all().item<bool>());
  EXPECT_THROW(task->conditions(torch::tensor({8}, torch::kLong)), c10::Error);
}

TEST(Condition, TheRewardProtocolSendsEachPromptsTextAndMetadata) {
  const TaskPtr task = make_task("ring-prompts");
  const auto cond = task->conditions(torch::tensor({0, 3}, torch::kLong));
  const auto body =
      nlohmann::json::parse(encode_reward_request(torch::zeros({2, 2}), cond, "r", "f32"));
  EXPECT_EQ(body["conditions"], nlohmann::json::array({0, 3}));
  EXPECT_EQ(body["prompts"], nlohmann::json::array({"east or north-east", "north-west or west"}));
  EXPECT_EQ(body["metadata"][1]["angles"][0].get<double>(), 135.0);
  // A class-conditional batch without a table sends its labels only, as before.
  const auto plain = nlohmann::json::parse(encode_reward_request(
      torch::zeros({1, 2}), Condition::classes(torch::tensor({4})), "r", "f32"));
  EXPECT_EQ(plain["conditions"], nlohmann::json::array({4}));
  EXPECT_FALSE(plain.contains("prompts"));
}

// The text-conditioned toy task end to end: pretraining with dropout to the null condition, guided
// rollouts (cfg 2, the task's encoded empty prompt as the negative), RAM on the conditional
// velocity, and the evaluation on the task's held-out conditions. A linear reward x_1 prefers,
// within every prompt, the prompt's mode with the larger x_1: the reward rises, and the samples
// still obey their prompts.
TEST(Condition, ATextConditionedToyTaskTrainsWithRamAndGuidance) {
  const TaskPtr task = make_task("ring-prompts");
  auto base = make_velocity_field(task->default_model(), 0);
  pretrain_flow_matching(
      *base, [&](int64_t n, Rng& rng, Condition* c) { return task->sample_data(n, rng, {}, c); },
      PretrainOptions().steps(2000).batch(256).lr(1e-3).seed(0).label_dropout(0.1).null_condition(
          task->null_condition()));
  auto reward = make_reward({{"type", "linear"}, {"coef", {1.0, 0.0}}}, 2);
  const double cfg = 2.0, m = 1.0;
  Evaluator evaluator(task, reward, m, *base, EvalOptions().samples(800).pool(4000).cfg(cfg));
  const EvalResult before = evaluator.evaluate(*base);
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  Trainer trainer(
      policy, frozen_copy(*base), reward,
      std::make_unique<RAM>(RAMOptions().multiplier(m).signal("centered")),
      TrainerOptions().sample_shape({2}).groups(4).group_size(8).cfg(cfg).lr(1e-3).seed(1),
      ConditionSource{[task](int64_t n, Rng& rng) { return task->sample_conditions(n, rng); },
                      task->null_condition()});
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(trainer.step().skipped.empty());
  const EvalResult after = evaluator.evaluate(trainer.policy());
  const double gain = evaluator.target().reward_optimal - before.reward_mean;
  ASSERT_GT(gain, 0.3);  // the tilt moves real mass between each prompt's two modes
  EXPECT_GT(after.reward_mean - before.reward_mean, 0.5 * gain)
      << "before " << before.reward_mean << ", after " << after.reward_mean << ", optimum "
      << evaluator.target().reward_optimal;
  // Every sample still answers its own prompt: it lies on one of the prompt's two modes.
  const auto x = after.samples;
  const auto angle = torch::atan2(x.select(1, 1), x.select(1, 0)).to(torch::kDouble);
  const auto mode = torch::round(angle / (2 * M_PI / 8)).remainder(8).to(torch::kLong);
  const auto offset = (mode - after.cond.id()).remainder(8);
  EXPECT_GT(((offset == 0) | (offset == 1)).to(torch::kDouble).mean().item<double>(), 0.95);
}

}  // namespace
}  // namespace ramflow
