#pragma once
// File helpers. Every file a run publishes is written atomically: to a temporary file in the same
// directory, flushed, then renamed over the destination, so a reader never sees half a file.
#include <string>

namespace ramflow {

/// Writes `bytes` to `path` atomically; throws IOError naming the path.
void write_file_atomic(const std::string& path, const std::string& bytes);
/// Reads a whole file; throws IOError naming the path.
std::string read_file(const std::string& path);

}  // namespace ramflow
