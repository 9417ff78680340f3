// The task contract over every registered task: data of the task's shape with one condition per
// sample, conditions of the right size for training, evaluation and guidance, a default model that
// takes them, a spec that rebuilds the task, and the registry's images flag.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "helpers.h"

#include "ramflow/errors.h"
#include "ramflow/gaussian_mixture.h"
#include "ramflow/task.h"
#include "ramflow/velocity_field.h"

namespace ramflow {
namespace {

// The parameters each registered task is built with here; a newly registered task without an entry
// is built with none.
nlohmann::json task_params(const std::string& name) {
  if (name == "mixture") return GaussianMixture::ring(3, 2.0, 0.3).to_json();
  if (name == "fashion")
    return {{"data_dir", testing::tiny_image_dataset(testing::fresh_temp_dir("tasks_fashion"))}};
  if (name == "prompts") {
    // The tiny SD3.5 pipeline's golden prompts (3) and their embeddings.
    const auto prompts = testing::fresh_temp_dir("tasks_prompts") + ".txt";
    std::ofstream(prompts) << "a red cube\n{\"prompt\": \"two dogs\", \"count\": 2}\n\nSTOP\n";
    return {{"prompt_embeds", testing::source("tests/fixtures/sd3/tiny-sd35/golden.safetensors")},
            {"prompts", prompts},
            {"latent_shape", {16, 8, 12}}};
  }
  return nullptr;
}

// The model a task without a default model of its own (it post-trains a given base) is tested
// with; null: the task's default model.
nlohmann::json task_model(const std::string& name) {
  if (name == "prompts")
    return {{"type", "sd3"},
            {"weights", testing::source("tests/fixtures/sd3/tiny-sd35/transformer")}};
  return nullptr;
}

class TaskContract : public ::testing::TestWithParam<std::string> {};

TEST_P(TaskContract, DataConditionsModelAndSpec) {
  const TaskPtr task = make_task(GetParam(), task_params(GetParam()));
  EXPECT_EQ(task->name(), GetParam());
  Rng rng(1);
  Condition cond;
  std::vector<int64_t> shape = {12};
  for (auto s : task->sample_shape()) shape.push_back(s);
  const nlohmann::json model_spec = task_model(GetParam());
  torch::Tensor x;
  if (model_spec.is_null()) {
    x = task->sample_data(12, rng, {}, &cond);
  } else {
    // A task of a given base has no data (it cannot pretrain) and no model of its own.
    EXPECT_THROW(task->sample_data(12, rng, {}, &cond), ConfigError);
    EXPECT_THROW(task->default_model(), ConfigError);
    x = rng.randn(shape);
    cond = task->sample_conditions(12, rng);
  }
  EXPECT_EQ(x.sizes().vec(), shape);
  EXPECT_EQ(x.scalar_type(), torch::kFloat);
  const bool conditional = task->condition_count() > 0;
  EXPECT_EQ(cond.defined(), conditional);
  EXPECT_EQ(task->sample_conditions(5, rng).size(), conditional ? 5 : 0);
  EXPECT_EQ(task->evaluation_conditions(7).size(), conditional ? 7 : 0);
  EXPECT_EQ(task->null_condition().size(), conditional ? 1 : 0);
  if (conditional) {
    EXPECT_EQ(cond.size(), 12);
    const auto ids = cond.id();
    EXPECT_GE(ids.min().item<int64_t>(), 0);
    EXPECT_LT(ids.max().item<int64_t>(), task->condition_count());
    EXPECT_FALSE(task->condition_text(0).empty());
    EXPECT_EQ(task->null_condition().id()[0].item<int64_t>(), kNullId);
  }
  // The default model takes the task's samples with their conditions, and the null condition.
  auto model = make_velocity_field(model_spec.is_null() ? task->default_model() : model_spec, 0);
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->forward(x, torch::full({12}, 0.5), cond).sizes(), x.sizes());
  if (conditional) {
    const auto null = task->null_condition().index_select(torch::zeros({12}, torch::kLong));
    EXPECT_EQ(model->forward(x, torch::full({12}, 0.5), null).sizes(), x.sizes());
  }
  EXPECT_EQ(make_task(task->spec()["task"].get<std::string>(), task->spec()["params"])->spec(),
            task->spec());
  // The registry's `images` flag (train-classifier's choices) says what the task is.
  EXPECT_EQ(tasks().get(GetParam()).images,
            task->sample_shape().size() == 3 && static_cast<bool>(task->test_split()));
}

INSTANTIATE_TEST_SUITE_P(AllTasks, TaskContract, ::testing::ValuesIn(tasks().names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace ramflow
