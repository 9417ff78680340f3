#pragma once
// The task `prompts`: text-to-image post-training of a given base (a diffusers SD3 pipeline), its
// conditions read from files. It has no data: it cannot pretrain, and it has no exact target
// (evaluation is `--eval reward`).
//   prompts        one prompt per line, or JSON lines {"prompt": "...", <metadata for rewards>}
//                  (blank lines skipped); optional: without it, prompt k is "prompt k"
//   prompt_embeds  a safetensors file with the prompts encoded by SD3's text encoders, in the
//                  prompt file's order (python/encode_prompts.py writes it):
//                    prompt_embeds [N, L, D], pooled_prompt_embeds [N, P],
//                    negative_prompt_embeds [1, L, D], negative_pooled_prompt_embeds [1, P] (the
//                    encoded empty prompt: the null condition of guidance), and, with eval
//                    prompts, eval_prompt_embeds [M, L, D], eval_pooled_prompt_embeds [M, P]
//   eval_prompts   held-out prompts for evaluation (the same format); without it, evaluation
//                  uses the training prompts
// Ids 0..N-1 are the training prompts, N..N+M-1 the evaluation prompts. A condition's tensors are
// "context" (the prompt's embeds) and "pooled"; its text is the prompt and its metadata the JSON
// line's other fields. Samples are latents of `latent_shape` [C, h, w].
#include <nlohmann/json.hpp>

#include "ramflow/task.h"

namespace ramflow {

/// params: {"prompt_embeds": path, "latent_shape": [C, h, w], optional "prompts", "eval_prompts",
/// "context_dim" and "pooled_dim" (the model's widths, checked against the embeddings)}. Every
/// error names the file and what is wrong (InputError) or the field (ConfigError).
TaskPtr make_prompt_task(const nlohmann::json& params);

}  // namespace ramflow
