#pragma once
// Prompt files: one prompt per line, or JSON lines {"prompt": "...", <metadata for rewards>} (blank
// lines skipped, a trailing CR dropped). Read by the task `prompts` and by `ramflow sample
// --prompts`.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ramflow {

struct Prompt {
  std::string text;
  nlohmann::json metadata;  // null, or the JSON line's fields other than "prompt"
};

/// The prompts of a file; InputError naming the file and line for a bad JSON line, or a file
/// without prompts.
std::vector<Prompt> read_prompts(const std::string& path);

}  // namespace ramflow
