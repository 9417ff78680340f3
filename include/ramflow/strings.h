#pragma once
// Small text helpers shared by error messages, help texts and reports.
#include <string>
#include <vector>

namespace ramflow {

/// The parts with `sep` between them: join({"a", "b", "c"}) == "a, b, c"; "" for no parts.
inline std::string join(const std::vector<std::string>& parts, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : std::string()) + parts[i];
  return out;
}

}  // namespace ramflow
