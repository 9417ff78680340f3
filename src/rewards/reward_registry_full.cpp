// The reward registry of the full library (target ramflow): the core's built-in list, then the
// rewards that need libraries the core does without (libjpeg, Tesseract), one line each.
#include "ramflow/reward.h"

namespace ramflow {

RewardPtr make_jpeg_compressibility_reward(const nlohmann::json& spec, int64_t dim);    // jpeg.cpp
RewardPtr make_jpeg_incompressibility_reward(const nlohmann::json& spec, int64_t dim);  // jpeg.cpp
RewardPtr make_ocr_reward(const nlohmann::json& spec, int64_t dim);                     // ocr.cpp

const Registry<RewardFactory>& rewards() {
  static const Registry<RewardFactory> registry = [] {
    Registry<RewardFactory> r("reward");
    register_builtin_rewards(r);
    r.add("jpeg-compressibility", make_jpeg_compressibility_reward,
          "-(JPEG size in kB) of images [B, C, H, W] in [-1, 1]; not differentiable  (fields: "
          "quality, 95)");
    r.add("jpeg-incompressibility", make_jpeg_incompressibility_reward,
          "+(JPEG size in kB), as jpeg-compressibility  (fields: quality, 95)");
    r.add("ocr", make_ocr_reward,
          "1 - min(d, n)/n for the Levenshtein distance d between the text Tesseract reads in an "
          "image [B, C, H, W] and its condition's text (n letters); not differentiable  (fields: "
          "text, alphabet A-Z, ink light, upscale 1, min_confidence 10, language eng, tessdata)");
    return r;
  }();
  return registry;
}

}  // namespace ramflow
