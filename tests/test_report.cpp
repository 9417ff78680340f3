// Tests for src/report: the progress lines of long work (include/ramflow/progress.h) and image
// grids with headings and row labels (include/ramflow/labelled_grid.h).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/html_report.h"
#include "ramflow/image.h"
#include "ramflow/io.h"
#include "ramflow/labelled_grid.h"
#include "ramflow/progress.h"

namespace ramflow {
namespace {

// The lines written so far, in plain (non-terminal) mode.
std::vector<std::string> lines_of(const std::ostringstream& os) {
  std::vector<std::string> out;
  std::istringstream in(os.str());
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(Progress, PlainLinesEveryTenthWithETA) {
  std::ostringstream os;
  Progress bar("finetune", 100, os, /*tty=*/false);
  for (int64_t done = 1; done <= 100; ++done) bar.update(done, "reward 0.5");
  bar.finish("reward 0.7");
  const auto lines = lines_of(os);
  ASSERT_EQ(lines.size(), 11u);  // steps 1, 11, ..., 91 and the final line
  EXPECT_EQ(lines[0].rfind("finetune 1/100   1%", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("ETA"), std::string::npos);
  EXPECT_NE(lines[0].find("reward 0.5"), std::string::npos);
  EXPECT_EQ(lines.back().rfind("finetune 100/100 100%", 0), 0u) << lines.back();
  EXPECT_EQ(lines.back().find("ETA"), std::string::npos);  // nothing left
  EXPECT_NE(lines.back().find("reward 0.7"), std::string::npos);
}

TEST(Progress, AStoppedRunShowsTheStepItStoppedAt) {
  std::ostringstream os;
  Progress bar("finetune", 20000, os, false);
  bar.update(3650);
  bar.stop(3650);
  const auto lines = lines_of(os);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].rfind("finetune 3650/20000  18%", 0), 0u) << lines[1];
  EXPECT_NE(lines[1].find("stopped"), std::string::npos);
  EXPECT_EQ(lines[1].find("ETA"), std::string::npos);
}

TEST(Progress, AResumedRunCountsItsRateFromWhereItResumed) {
  // Resumed at 900 of 1000: the first update after one step must not claim an ETA of 0 (the rate
  // of 901 steps in a moment) but that of the 99 steps left at this process's own rate.
  std::ostringstream os;
  Progress bar("pretrain", 1000, os, false, /*first=*/900);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  bar.update(901);
  const auto lines = lines_of(os);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("pretrain 901/1000  90%", 0), 0u) << lines[0];
  // ETA = elapsed / 1 step x 99 steps >= 0.05 s x 99 = 4.95 s ("5.0s"); counted from step 0 it
  // would be elapsed / 901 x 99, under 0.1 s.
  const size_t p = lines[0].find("ETA ");
  ASSERT_NE(p, std::string::npos) << lines[0];
  EXPECT_GE(std::stod(lines[0].substr(p + 4)), 4.9) << lines[0];
}

TEST(LabelledGrid, TilesAreEnlargedToBeLegible) {
  EXPECT_EQ(legible_scale(28, 28, 2, 8), 2);    // Fashion-MNIST: 56 pixels tall
  EXPECT_EQ(legible_scale(16, 64, 3, 4), 3);    // words: 4 would pass 2400 pixels across
  EXPECT_EQ(legible_scale(512, 512, 1, 4), 1);  // never smaller than the images
  EXPECT_EQ(legible_scale(28, 28, 40, 10), 1);  // however many grids
}

TEST(LabelledGrid, HeadingsOverEachGridAndALabelLeftOfEachRow) {
  // Two batches of 2 x 3 grey tiles of 28 pixels, mid-grey (x = 0: byte 128), enlarged twice.
  const auto x = torch::zeros({6, 1, 28, 28});
  const std::string path = testing::fresh_temp_dir("labelled_grid") + ".png";
  save_labelled_grids(path, {x, x}, {"base model", "ram after 600 steps"}, {"T-shirt/top", "Bag"},
                      2, 3);
  const auto png = read_png(path);  // [H, W] uint8, white ground
  ASSERT_EQ(png.dim(), 2);
  // Margins of 8, a heading band of 40, the grids of 2 rows of 56-pixel tiles with 3 between:
  // 2 (56 + 3) + 3 = 121 tall, 3 (56 + 3) + 3 = 180 wide each, 16 apart.
  EXPECT_EQ(png.size(0), 8 + 40 + 121 + 8);
  const int64_t label_w = png.size(1) - (8 + 180 + 16 + 180 + 8);
  EXPECT_GT(label_w, 8 + 20);  // a column of row labels
  // The first tile where it belongs, mid-grey.
  const int64_t top = 8 + 40 + 3, left = 8 + label_w + 3;
  EXPECT_TRUE(png.narrow(0, top, 56).narrow(1, left, 56).eq(128).all().item<bool>());
  // Ink (dark pixels) in the heading band over each grid and in the label column by each row.
  auto dark = [&](int64_t r0, int64_t h, int64_t c0, int64_t w) {
    return png.narrow(0, r0, h).narrow(1, c0, w).lt(100).sum().item<int64_t>();
  };
  EXPECT_GT(dark(8, 40, 8 + label_w, 180), 20);             // "base model"
  EXPECT_GT(dark(8, 40, 8 + label_w + 180 + 16, 180), 20);  // "ram after 600 steps"
  EXPECT_GT(dark(top, 56, 0, label_w), 20);                 // "T-shirt/top"
  EXPECT_GT(dark(top + 59, 56, 0, label_w), 20);            // "Bag"
  EXPECT_EQ(dark(top, 121 - 6, 8 + label_w, 180), 0);       // none over the tiles
}

TEST(HtmlReport, ALongRunsPageCarriesFortyEvaluationPicturesFirstToLast) {
  // 50 evaluations (steps 0, 10, ..., 490): the page carries 40 of them, the first and the last
  // among them, so that a page rewritten at every evaluation stays bounded.
  namespace fs = std::filesystem;
  const std::string run = testing::fresh_temp_dir("html_report");
  fs::create_directories(run + "/plots/steps");
  const std::string png = encode_png(torch::full({4, 4}, 128, torch::kByte));
  for (int k = 0; k < 50; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "/plots/steps/step-%08d.png", 10 * k);
    write_file_atomic(run + name, png);
  }
  write_run_report(run);
  const std::string html = read_file(run + "/report.html");
  size_t pictures = 0;
  for (size_t at = 0; (at = html.find("\"step\":", at)) != std::string::npos; ++at) ++pictures;
  EXPECT_EQ(pictures, 40u);
  EXPECT_NE(html.find("\"step\":0}"), std::string::npos);
  EXPECT_NE(html.find("\"step\":490}"), std::string::npos);
}

}  // namespace
}  // namespace ramflow
