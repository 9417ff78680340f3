#pragma once
// A reward built for decoded samples, seen from the model's samples: r(z, c) = reward(decode(z),
// c). Everything that scores a model's samples (the trainer's rollouts, the evaluation, DRaFT's
// differentiable chain) holds this one wrapper, so every reward, judge and reward server sees
// decoded samples. Its gradient grad_z r = J_decode(z)^T grad_x reward(x) comes from autograd
// through the frozen decoder; it is differentiable when the inner reward is. With the identity
// decoder it is the reward.
#include "ramflow/decoder.h"
#include "ramflow/reward.h"

namespace ramflow {

/// `decoder` must be frozen (make_decoder does that); an identity decoder returns `reward` itself.
RewardPtr decoded_reward(DecoderPtr decoder, RewardPtr reward);

}  // namespace ramflow
