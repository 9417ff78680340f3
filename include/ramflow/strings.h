#pragma once
// Small text helpers shared by error messages, help texts and reports.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace ramflow {

/// The parts with `sep` between them: join({"a", "b", "c"}) == "a, b, c"; "" for no parts.
inline std::string join(const std::vector<std::string>& parts, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : std::string()) + parts[i];
  return out;
}

/// Whether `name` begins with one of `prefixes`.
inline bool starts_with_any(const std::string& name, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes)
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

/// The non-empty items of `text` between `sep`, each without surrounding spaces and tabs:
/// split(" a, b,,c ", ',') == {"a", "b", "c"}.
inline std::vector<std::string> split(const std::string& text, char sep = ',') {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(sep, begin);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(begin, end - begin);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    begin = end + 1;
  }
  return out;
}

/// The Levenshtein distance: the fewest insertions, deletions and substitutions of one character
/// that turn `a` into `b` (bytes compared; O(|a| |b|) time, O(|b|) memory).
inline size_t edit_distance(const std::string& a, const std::string& b) {
  // row[j] = distance(a[0, i), b[0, j)) for the current i; the recurrence
  // d(i, j) = min(d(i-1, j) + 1, d(i, j-1) + 1, d(i-1, j-1) + [a_i != b_j]).
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];  // d(i-1, j-1)
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];  // d(i-1, j)
      row[j] = std::min({up + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

/// A tensor shape as error messages write it: shape_text({1, 16, 64}) == "[1, 16, 64]" (a tensor's
/// `t.sizes().vec()`).
inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::vector<std::string> sizes;
  for (int64_t n : shape) sizes.push_back(std::to_string(n));
  return "[" + join(sizes) + "]";
}

/// FNV-1a, 64 bit (offset basis 14695981039346656037, prime 1099511628211): a hash that is the same
/// in every build and process (std::hash is not), for cache keys and data splits.
inline uint64_t fnv1a(const std::string& text) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace ramflow
