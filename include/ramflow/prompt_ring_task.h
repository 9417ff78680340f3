#pragma once
// The text-conditioned toy task `ring-prompts`: the 8-mode ring of the `ring` task, asked for by
// prompt. Prompt k names two neighbouring compass directions ("east or north-east", ...); its data
// is modes k and k + 1 (mod 8) of the ring with probability 1/2 each, mode j being N(4 (cos, sin)(2
// pi j / 8), 0.15^2 I), so a reward can move mass between the two modes of every prompt. Each
// prompt comes "encoded" as SD3's are: a context of L = 4 tokens of width C = 8 and a pooled vector
// of width P = 6, fixed random vectors per prompt (seed 0), and the null condition of guidance is
// one more such pair (the encoded empty prompt). The condition's metadata gives the two modes'
// angles in degrees. Its default model is `text_mlp` (text_mlp_velocity.h).
#include <nlohmann/json.hpp>

#include "ramflow/task.h"

namespace ramflow {

/// The `ring-prompts` task; it takes no parameters (`params` must be null).
TaskPtr make_prompt_ring_task(const nlohmann::json& params);

}  // namespace ramflow
