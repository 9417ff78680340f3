#pragma once
// What every fuzz target shares: the input as a file (the readers under test take paths), and the
// rule that the only acceptable failure is the error a reader documents. Anything else (another
// exception, a sanitizer report, a crash) is a finding: the target aborts, and libFuzzer saves the
// input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <unistd.h>

namespace ramflow::fuzz {

/// Writes the input to this process's scratch file and returns its path.
inline std::string as_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string path = [&] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/ramflow_fuzz_" + std::to_string(::getpid()) +
           suffix;
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

/// Reports an exception the reader does not document, and aborts.
[[noreturn]] inline void finding(const char* target, const std::exception& e) {
  std::fprintf(stderr, "%s: undocumented exception: %s\n", target, e.what());
  std::abort();
}

}  // namespace ramflow::fuzz
