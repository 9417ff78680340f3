// The decoded reward (see include/ramflow/decoded_reward.h).
#include "ramflow/decoded_reward.h"

#include <torch/torch.h>

#include "ramflow/identity_decoder.h"

namespace ramflow {
namespace {

class DecodedReward : public Reward {
 public:
  DecodedReward(DecoderPtr decoder, RewardPtr reward)
      : decoder_(std::move(decoder)), reward_(std::move(reward)) {}
  torch::Tensor score(const torch::Tensor& z, const Condition& cond) const override {
    return score_terms(z, cond).total;
  }
  ScoredBatch score_terms(const torch::Tensor& z, const Condition& cond) const override {
    return reward_->score_terms(decoder_->forward(z), cond);  // x = decode(z): [B, ...decoded]
  }
  bool differentiable() const override { return reward_->differentiable(); }
  bool overlap() const override { return reward_->overlap(); }
  nlohmann::json spec() const override {
    return {{"type", "decoded"}, {"decoder", decoder_->spec()}, {"reward", reward_->spec()}};
  }

 private:
  DecoderPtr decoder_;
  RewardPtr reward_;
};

}  // namespace

RewardPtr decoded_reward(DecoderPtr decoder, RewardPtr reward) {
  TORCH_CHECK(decoder && reward, "decoded_reward: a decoder and a reward are required");
  if (std::dynamic_pointer_cast<IdentityDecoderImpl>(decoder)) return reward;
  return std::make_shared<DecodedReward>(std::move(decoder), std::move(reward));
}

}  // namespace ramflow
