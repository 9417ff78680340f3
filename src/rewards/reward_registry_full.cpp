// The reward registry of the full library (target ramflow): the core's built-in list, then the
// rewards that need libraries the core does without (libjpeg), one line each.
#include "ramflow/reward.h"

namespace ramflow {

RewardPtr make_jpeg_compressibility_reward(const nlohmann::json& spec, int64_t dim);    // jpeg.cpp
RewardPtr make_jpeg_incompressibility_reward(const nlohmann::json& spec, int64_t dim);  // jpeg.cpp

const Registry<RewardFactory>& rewards() {
  static const Registry<RewardFactory> registry = [] {
    Registry<RewardFactory> r("reward");
    register_builtin_rewards(r);
    r.add("jpeg-compressibility", make_jpeg_compressibility_reward,
          "-(JPEG size in kB) of images [B, C, H, W] in [-1, 1]; not differentiable  (fields: "
          "quality, 95)");
    r.add("jpeg-incompressibility", make_jpeg_incompressibility_reward,
          "+(JPEG size in kB), as jpeg-compressibility  (fields: quality, 95)");
    return r;
  }();
  return registry;
}

}  // namespace ramflow
