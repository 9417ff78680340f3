// Text rendering with FreeType: deterministic, the ink where measure says, errors named.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ramflow/errors.h"
#include "ramflow/text_render.h"

namespace ramflow {
namespace {

const char* kFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";  // fonts-dejavu-core

TEST(TextRender, TheInkLiesInsideTheMeasuredBoxAndTheImage) {
  TextRenderer font(kFont);
  for (const std::string word : {"A", "QUICK", "JUMPS", "WAVE", "MINIMUM"}) {
    const int64_t size = 16, x = 3, baseline = 19, H = 24, W = 96;
    const auto box = font.measure(word, size);
    ASSERT_LT(box.left, box.right);
    ASSERT_LT(box.top, 0);  // capitals rise above the baseline
    // The word fits: every pixel of the box is inside the image.
    ASSERT_GE(x + box.left, 0);
    ASSERT_LE(x + box.right, W) << word;
    ASSERT_GE(baseline + box.top, 0);
    ASSERT_LE(baseline + box.bottom, H);
    const auto image = font.render(word, size, x, baseline, H, W);
    ASSERT_EQ(image.sizes(), torch::IntArrayRef({H, W}));
    EXPECT_GE(image.min().item<float>(), 0.0f);
    EXPECT_LE(image.max().item<float>(), 1.0f);
    EXPECT_GT(image.max().item<float>(), 0.9f);  // solid strokes
    // No ink outside the box; ink in every row band and column band of it (each side is touched).
    auto inside = torch::zeros({H, W}, torch::kBool);
    inside.slice(0, baseline + box.top, baseline + box.bottom)
        .slice(1, x + box.left, x + box.right)
        .fill_(true);
    EXPECT_EQ(image.masked_select(inside.logical_not()).abs().sum().item<float>(), 0.0f) << word;
    const auto rows = image.sum(1), cols = image.sum(0);
    EXPECT_GT(rows[baseline + box.top].item<float>(), 0.0f);
    EXPECT_GT(rows[baseline + box.bottom - 1].item<float>(), 0.0f);
    EXPECT_GT(cols[x + box.left].item<float>(), 0.0f);
    EXPECT_GT(cols[x + box.right - 1].item<float>(), 0.0f);
  }
}

TEST(TextRender, DeterministicScaledByIntensityAndShifted) {
  TextRenderer a(kFont), b(kFont);
  const auto one = a.render("HOUSE", 14, 5, 18, 24, 96);
  EXPECT_TRUE(torch::equal(one, b.render("HOUSE", 14, 5, 18, 24, 96)));
  EXPECT_TRUE(torch::equal(one, a.render("HOUSE", 14, 5, 18, 24, 96)));  // no state carried over
  EXPECT_TRUE(torch::allclose(a.render("HOUSE", 14, 5, 18, 24, 96, 0.5), 0.5 * one, 0, 1e-7));
  // Moving the pen by whole pixels moves the image.
  const auto moved = a.render("HOUSE", 14, 7, 17, 24, 96);
  EXPECT_TRUE(torch::equal(moved.slice(0, 0, 23).slice(1, 2), one.slice(0, 1).slice(1, 0, 94)));
  // Ink outside the image is cut off, not wrapped.
  const auto cut = a.render("HOUSE", 14, -10, 18, 24, 96);
  EXPECT_LT(cut.sum().item<float>(), one.sum().item<float>());
  EXPECT_EQ(a.measure("", 14).right, 0);
}

TEST(TextRender, ErrorsNameTheFontTheCharacterAndTheSize) {
  try {
    TextRenderer missing("no-such-font.ttf");
    FAIL() << "read a missing font";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-font.ttf"), std::string::npos);
  }
  TextRenderer font(kFont);
  try {
    font.measure("A\x01", 12);
    FAIL() << "drew a character the font lacks";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("DejaVuSans"), std::string::npos) << e.what();
  }
  EXPECT_THROW(font.measure("A", 0), ConfigError);
}

}  // namespace
}  // namespace ramflow
