// The brightness reward: the mean of all coordinates of a sample, an image's mean intensity.
//   r(x) = (1/D) sum_i x_i,   D = the number of coordinates of one sample
// Differentiable (grad = 1/D everywhere) and linear, so it is also a quadratic form (Q = 0, b =
// 1/D), which gives the exact tilt of Gaussian-mixture data. A simple image statistic for tests and
// for weighted sums with learned or non-differentiable rewards (a classic "hacking" direction: a
// tilt toward brightness washes the images out).
#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/reward.h"

namespace ramflow {

namespace {

class BrightnessReward : public Reward {
 public:
  explicit BrightnessReward(int64_t dim) : dim_(dim) {}
  torch::Tensor score(const torch::Tensor& x0, const Condition&) const override {
    return x0.reshape({x0.size(0), -1}).mean(1);  // [B, ...] -> [B]
  }
  bool differentiable() const override { return true; }
  std::optional<QuadraticForm> quadratic_form() const override {
    return QuadraticForm{torch::zeros({dim_, dim_}, torch::kDouble),
                         torch::full({dim_}, 1.0 / static_cast<double>(dim_), torch::kDouble), 0.0};
  }
  nlohmann::json spec() const override { return {{"type", "brightness"}}; }

 private:
  int64_t dim_;
};

}  // namespace

RewardPtr make_brightness_reward(const nlohmann::json& spec, int64_t dim) {
  SpecReader r(spec, "reward 'brightness'");
  r.text("type");
  r.finish();
  return std::make_shared<BrightnessReward>(dim);
}

}  // namespace ramflow
