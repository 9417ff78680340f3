#pragma once
// Clean endpoints re-noised exactly as in pretraining, with K (t, eps) draws per endpoint: the
// training points of flow-matching pretraining (K = 1), RAM, EAM and DiffusionNFT.
//   x_t = (1 - t) x0 + t eps,   t ~ the time distribution,   eps ~ N(0, I)
#include <torch/types.h>

#include "ramflow/condition.h"
#include "ramflow/rng.h"
#include "ramflow/rows.h"
#include "ramflow/time.h"

namespace ramflow {

struct Renoised {
  torch::Tensor x0;   // [B*K, ...] endpoint b repeated on rows b*K .. b*K + K - 1 (detached)
  Condition cond;     // B*K rows, likewise (or empty)
  torch::Tensor t;    // [B*K]
  torch::Tensor eps;  // [B*K, ...]
  torch::Tensor x_t;  // [B*K, ...]
};

/// K draws for each row of x0 [B, ...] (and its conditions, B rows or empty). Draws t, then eps,
/// from `rng`: that order fixes what a seed gives. `rows`: which rows of the batch x0 holds (one
/// share of a split batch, rows.h); the draws are that batch's.
Renoised renoise(const torch::Tensor& x0, const Condition& cond, int64_t K,
                 const TimeDistribution& time, Rng& rng, const Rows& rows = {});

/// The same at given times t [B*K] (rows b*K .. b*K + K - 1 belong to endpoint b): draws only eps.
Renoised renoise_at(const torch::Tensor& x0, const Condition& cond, const torch::Tensor& t,
                    Rng& rng, const Rows& rows = {});

}  // namespace ramflow
