#pragma once
// The task `words`: images of words, drawn on the fly with FreeType (text_render.h), conditioned on
// the word itself: visual text rendering (the OCR experiment of Flow-GRPO and RAM) at a size that
// trains on two CPU cores.
//
// Words: the lines of a word list (Debian's wamerican, /usr/share/dict/american-english, by
// default) made only of the letters a-z (no proper nouns, no apostrophes), min_letters to
// max_letters long, upper-cased, sorted, without repeats. A word is held out when the FNV-1a hash
// (strings.h) of its upper-case letters is 0 mod `held_out_every` (10: about a tenth): held-out
// words never appear in pretraining or in post-training rollouts; evaluation asks for them in
// turn, each `eval_repeats` times (4) in a row, and the test split is the first `eval_images`
// (2000) of those requests, rendered. Ids
// 0..T-1 are the training words, T..T+V-1 the held-out ones, each list sorted.
//
// An image: x0 [1, height, width] in [-1, 1], ground -1 (no ink) and light ink: the word in
// capitals in one of the fonts (drawn uniformly; by default DejaVu Sans Mono Bold and Liberation
// Mono Bold) at a pixel size uniform in [min_size, max_size] (14; shrunk until it fits, with a
// pixel of margin), at a uniform position where it fits within `jitter` pixels (2) of the centred
// position on each axis (jitter -1: anywhere it fits), with ink intensity uniform in
// [min_intensity, 1] (0.7): pixel = 2 intensity coverage - 1.
//
// The condition: "tokens" [B, prompt_length] int64 (char_encoder.h: letter k as k + 1, 0 after the
// word), read by the base model's own text encoder (the model sd3_char); the null condition is the
// empty prompt (all 0). Its text is the word (the OCR reward's target).
//
// Every file (word list, fonts) is read and checked when the task is built, before any compute.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ramflow/task.h"

namespace ramflow {

/// params (all optional): {"words": path, "fonts": [paths], "height": 16, "width": 64,
/// "min_letters", "max_letters", "min_size", "max_size", "min_intensity", "jitter",
/// "held_out_every", "eval_repeats",
/// "prompt_length": 10, "eval_images": 2000}. ConfigError naming the field, InputError naming the
/// file (and the Debian package that installs it).
TaskPtr make_words_task(const nlohmann::json& params);

/// The words task's preset (TaskInfo::preset): pretraining and post-training settings.
nlohmann::json words_task_preset();

}  // namespace ramflow
