// Images: PNG round trips, grids, the IDX image task (shapes, labels, splits, errors).
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/errors.h"
#include "ramflow/image.h"
#include "ramflow/image_task.h"
#include "ramflow/task.h"

namespace ramflow {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / ("ramflow_images_" + name)).string();
}

TEST(Png, GreyAndRgbRoundTrip) {
  auto grey = torch::randint(0, 256, {7, 13}, torch::kByte);
  write_png(temp_path("g.png"), grey);
  EXPECT_TRUE(torch::equal(read_png(temp_path("g.png")), grey));
  auto rgb = torch::randint(0, 256, {5, 4, 3}, torch::kByte);
  write_png(temp_path("c.png"), rgb);
  EXPECT_TRUE(torch::equal(read_png(temp_path("c.png")), rgb));
  EXPECT_THROW(write_png(temp_path("bad.png"), torch::zeros({4, 4, 2}, torch::kByte)), c10::Error);
  EXPECT_THROW(read_png(temp_path("missing.png")), IOError);
}

TEST(Png, BytesOfUnitImages) {
  // -1 -> 0, 1 -> 255, 0 -> round(127.5) = 128, out of range clamps.
  auto x = torch::tensor({-1.0f, 1.0f, 0.0f, -3.0f, 2.0f}).reshape({1, 1, 1, 5});
  auto b = to_bytes(x).flatten();
  EXPECT_EQ(b[0].item<int>(), 0);
  EXPECT_EQ(b[1].item<int>(), 255);
  EXPECT_EQ(b[2].item<int>(), 128);
  EXPECT_EQ(b[3].item<int>(), 0);
  EXPECT_EQ(b[4].item<int>(), 255);
}

TEST(Png, GridPlacesEveryTile) {
  // 6 tiles of 3x2 in 2 rows x 3 cols, pad 1: tile i is constant (value i / 5 * 2 - 1).
  auto x = (torch::arange(6, torch::kFloat) / 5 * 2 - 1)
               .reshape({6, 1, 1, 1})
               .expand({6, 1, 3, 2})
               .contiguous();
  auto g = image_grid(x, 2, 3, /*pad=*/1, /*background=*/7);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{2 * 4 + 1, 3 * 3 + 1}));
  auto bytes = to_bytes(x);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t c = 0; c < 3; ++c)
      EXPECT_TRUE(
          torch::equal(g.narrow(0, 1 + r * 4, 3).narrow(1, 1 + c * 3, 2), bytes[r * 3 + c][0]));
  EXPECT_EQ(g[0][0].item<int>(), 7);
  auto both = side_by_side({g, g}, 5, 0);
  EXPECT_EQ(both.size(1), 2 * g.size(1) + 5);
}

TEST(ImageTask, ShapesLabelsAndSplits) {
  const auto dir = testing::tiny_image_dataset(temp_path("data"));
  auto task = make_task("fashion", {{"data_dir", dir}});
  EXPECT_EQ(task->sample_shape(), (std::vector<int64_t>{1, 8, 8}));
  EXPECT_EQ(task->num_classes(), 10);  // the fashion task's classes; the tiny data uses 0..2
  EXPECT_EQ(task->condition_text(9), "Ankle boot");
  EXPECT_EQ(task->condition_text(kNullId), "");
  EXPECT_EQ(task->default_model()["type"], "unet");
  Rng rng(0);
  Condition cond;
  auto x = task->sample_data(50, rng, {}, &cond);
  const auto labels = cond.at("label");
  EXPECT_TRUE(torch::equal(cond.id(), labels));  // a class's id is its label
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{50, 1, 8, 8}));
  ASSERT_EQ(labels.sizes(), (std::vector<int64_t>{50}));
  EXPECT_GE(x.min().item<float>(), -1.0f);
  EXPECT_LE(x.max().item<float>(), 1.0f);
  // Every sample's bright square sits where its label says: the pair (image, label) stays together.
  for (int64_t i = 0; i < 50; ++i) {
    const int64_t k = labels[i].item<int64_t>();
    EXPECT_GT(x[i][0][1][2 * k].item<float>(), 0.8f) << "sample " << i << " label " << k;
  }
  auto test = task->test_split();
  ASSERT_TRUE(test.has_value());
  EXPECT_EQ(test->x.size(0), 30);
  EXPECT_EQ(test->cond.size(), 30);
  EXPECT_EQ(task->training_split().x.size(0), 60);
  auto c = task->sample_conditions(4000, rng).id();
  EXPECT_EQ(task->sample_conditions(3, rng).text(0).empty(),
            false);  // the task names its conditions
  EXPECT_EQ(c.min().item<int64_t>(), 0);
  EXPECT_EQ(c.max().item<int64_t>(), 9);
  EXPECT_NEAR(c.eq(3).sum().item<double>() / 4000.0, 0.1, 0.02);
}

TEST(ImageTask, MissingOrMalformedFilesNameTheFile) {
  const auto empty = temp_path("empty");
  std::filesystem::create_directories(empty);
  try {
    make_task("fashion", {{"data_dir", empty}});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train-images-idx3-ubyte"), std::string::npos) << e.what();
  }
  const auto dir = testing::tiny_image_dataset(temp_path("bad_labels"));
  write_idx(dir + "/t10k-labels-idx1-ubyte", torch::full({30}, 12, torch::kByte));
  try {
    make_task("fashion", {{"data_dir", dir}});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("t10k-labels-idx1-ubyte: label 12"), std::string::npos)
        << e.what();
  }
  write_idx(dir + "/t10k-labels-idx1-ubyte", torch::zeros({29}, torch::kByte));
  EXPECT_THROW(make_task("fashion", {{"data_dir", dir}}), InputError);
  EXPECT_THROW(make_task("fashion", {{"data_dir", dir}, {"colour", true}}), ConfigError);
  EXPECT_THROW(make_task("ring", {{"data_dir", dir}}), ConfigError);
}

}  // namespace
}  // namespace ramflow
