// Prompt files (see include/ramflow/prompts_file.h).
#include "ramflow/prompts_file.h"

#include <sstream>

#include "ramflow/errors.h"
#include "ramflow/io.h"

namespace ramflow {

std::vector<Prompt> read_prompts(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<Prompt> prompts;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (line.front() != '{') {
      prompts.push_back({line, nullptr});
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ":" + std::to_string(number) + ": not a JSON object: " + e.what());
    }
    if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
      throw InputError(path + ":" + std::to_string(number) +
                       ": a JSON line needs a string \"prompt\"");
    Prompt p{j["prompt"].get<std::string>(), nullptr};
    j.erase("prompt");
    if (!j.empty()) p.metadata = j;
    prompts.push_back(std::move(p));
  }
  if (prompts.empty()) throw InputError(path + ": no prompts");
  return prompts;
}

}  // namespace ramflow
