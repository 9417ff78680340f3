// The OCR reward: the text distance, the score's formula, and Tesseract reading rendered words.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <stdexcept>

#include "ramflow/condition.h"
#include "ramflow/errors.h"
#include "ramflow/ocr_reward.h"
#include "ramflow/reward.h"
#include "ramflow/strings.h"
#include "ramflow/text_render.h"

namespace ramflow {
namespace {

const char* kFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";  // fonts-dejavu-core

TEST(EditDistance, KnownDistancesAndSymmetry) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("flaw", "lawn"), 2u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("abc", "abc"), 0u);
  EXPECT_EQ(edit_distance("abc", "acb"), 2u);  // a transposition is two edits
  for (auto [a, b] : {std::pair{"house", "horse"}, std::pair{"zebra", "ebra"}})
    EXPECT_EQ(edit_distance(a, b), edit_distance(b, a));
}

TEST(OcrScore, FlowGrposFormula) {
  EXPECT_DOUBLE_EQ(ocr_text_score("HELLO", "hello\n"), 1.0);          // case and newline ignored
  EXPECT_DOUBLE_EQ(ocr_text_score("AB CD", "abcd"), 1.0);             // spaces ignored
  EXPECT_DOUBLE_EQ(ocr_text_score("CAT", "XXCATYY"), 1.0);            // a substring: d = 0
  EXPECT_DOUBLE_EQ(ocr_text_score("HOUSE", "HOUSF"), 1.0 - 1.0 / 5);  // one wrong letter
  EXPECT_DOUBLE_EQ(ocr_text_score("HOUSE", "HOUE"), 1.0 - 1.0 / 5);   // one missing letter
  EXPECT_DOUBLE_EQ(ocr_text_score("CAT", ""), 0.0);                   // nothing read
  EXPECT_DOUBLE_EQ(ocr_text_score("CAT", "ZZZZZZZZ"), 0.0);           // d > n is capped at n
  EXPECT_THROW(ocr_text_score(" ", "A"), std::invalid_argument);
}

/// Words drawn light on dark, as the data range [-1, 1]: [n, 1, 24, 96].
torch::Tensor rendered(const std::vector<std::string>& words) {
  TextRenderer font(kFont);
  std::vector<torch::Tensor> images;
  for (const auto& w : words) images.push_back(font.render(w, 16, 4, 18, 24, 96) * 2 - 1);
  return torch::stack(images).unsqueeze(1);
}

Condition conditions_of(const std::vector<std::string>& words) {
  return Condition::classes(torch::arange(static_cast<int64_t>(words.size())),
                            std::make_shared<TextTable>(words));
}

TEST(OcrReward, CleanWordsScoreOneBlankImagesZeroAndAWrongLetterItsShare) {
  const std::vector<std::string> words = {"CAT", "HOUSE", "RIVER", "GARDEN", "PLANET", "MUSIC"};
  auto reward = make_reward({{"type", "ocr"}}, 24 * 96);
  EXPECT_FALSE(reward->differentiable());
  const auto scores = reward->score(rendered(words), conditions_of(words));
  ASSERT_EQ(scores.sizes(), torch::IntArrayRef({6}));
  EXPECT_TRUE(torch::equal(scores, torch::ones({6}))) << scores;
  // A blank image (the ground alone) reads as nothing.
  const auto blank = -torch::ones({2, 1, 24, 96});
  EXPECT_TRUE(
      torch::equal(reward->score(blank, conditions_of({"CAT", "HOUSE"})), torch::zeros({2})));
  // "HOUSF" drawn, "HOUSE" asked for: one letter of five wrong.
  const auto wrong = reward->score(rendered({"HOUSF"}), conditions_of({"HOUSE"}));
  EXPECT_NEAR(wrong.item<float>(), 1.0 - 1.0 / 5, 1e-6);
  // The term "exact_match": 1 for a reading equal to the target, 0 for a wrong letter or a blank,
  // and 0 for a target inside longer text (which the score counts as 1).
  const auto terms = reward->score_terms(rendered({"CAT", "HOUSF", "CATS"}),
                                         conditions_of({"CAT", "HOUSE", "CAT"}));
  EXPECT_TRUE(torch::equal(terms.total.narrow(0, 0, 2), torch::tensor({1.0f, 0.8f})))
      << terms.total;
  EXPECT_FLOAT_EQ(terms.total[2].item<float>(), 1.0f);
  EXPECT_TRUE(torch::equal(terms.terms.at("exact_match"), torch::tensor({1.0f, 0.0f, 0.0f})));
  // Dark ink on a light ground reads the same with ink "dark"; three channels as their mean.
  auto dark = make_reward({{"type", "ocr"}, {"ink", "dark"}, {"upscale", 2}}, 3 * 24 * 96);
  const auto inverted = (-rendered(words)).expand({6, 3, 24, 96});
  EXPECT_TRUE(torch::equal(dark->score(inverted, conditions_of(words)), torch::ones({6})));
}

TEST(OcrReward, FixedTextAndTheSpecRoundTrip) {
  auto reward = make_reward({{"type", "ocr"}, {"text", "GARDEN"}}, 24 * 96);
  const auto images = rendered({"GARDEN", "GARDEM"});
  const auto scores = reward->score(images);  // no condition: the spec's text
  EXPECT_FLOAT_EQ(scores[0].item<float>(), 1.0f);
  EXPECT_NEAR(scores[1].item<float>(), 1.0 - 1.0 / 6, 1e-6);
  auto again = make_reward(reward->spec(), 24 * 96);
  EXPECT_TRUE(torch::equal(again->score(images), scores));
}

TEST(OcrReward, BadSpecsAndMissingTextAreClearErrors) {
  auto message = [](const nlohmann::json& spec) {
    try {
      make_reward(spec, 24 * 96);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // Missing language data names the file and the Debian package.
  const std::string missing = message({{"type", "ocr"}, {"language", "xyz"}});
  EXPECT_NE(missing.find("xyz.traineddata"), std::string::npos) << missing;
  EXPECT_NE(missing.find("tesseract-ocr-xyz"), std::string::npos) << missing;
  const std::string folder =
      message({{"type", "ocr"}, {"tessdata", ::testing::TempDir() + "no-such-folder"}});
  EXPECT_NE(folder.find("no-such-folder"), std::string::npos) << folder;
  EXPECT_NE(message({{"type", "ocr"}, {"ink", "grey"}}).find("'ink'"), std::string::npos);
  EXPECT_NE(message({{"type", "ocr"}, {"upscale", 0}}).find("'upscale'"), std::string::npos);
  EXPECT_NE(message({{"type", "ocr"}, {"alphabet", ""}}).find("'alphabet'"), std::string::npos);
  EXPECT_NE(message({{"type", "ocr"}, {"min_confidence", 100}}).find("'min_confidence'"),
            std::string::npos);
  EXPECT_NE(message({{"type", "ocr"}, {"colour", 1}}).find("colour"), std::string::npos);
  // Images without a text to read: the sample is named.
  auto reward = make_reward({{"type", "ocr"}}, 24 * 96);
  try {
    reward->score(rendered({"CAT"}));
    FAIL() << "scored an image without a target text";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("sample 0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ramflow
