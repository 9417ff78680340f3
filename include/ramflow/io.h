#pragma once
// File helpers. Every file a run publishes is written atomically: to a temporary file in the same
// directory, flushed, then renamed over the destination, so a reader never sees half a file.
#include <string>

namespace ramflow {

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory);
/// throws IOError naming the path (a full disk: "write failed (No space left on device)"), leaving
/// any previous file at `path` as it was.
void write_file_atomic(const std::string& path, const std::string& bytes);
/// Reads a whole file; throws IOError naming the path.
std::string read_file(const std::string& path);
/// Readies `path` for a file written after long work (an output the user named, checked before any
/// compute): creates its missing parent folders and checks that a file can be created there (a
/// probe file, removed at once). Throws InputError starting with `what` and the path otherwise
/// ("--out /proc/x: cannot write there (Permission denied)").
void prepare_output_file(const std::string& path, const std::string& what);
/// Removes `path` and everything under it, without following links; nothing to do if it is absent.
/// Throws IOError naming the first entry that cannot be removed. (Not std::filesystem::remove_all:
/// the PyTorch 2.11 wheels' libtorch.so exports its own copy of it, which binds in place of
/// libstdc++'s and crashes on any non-empty directory.)
void remove_tree(const std::string& path);

}  // namespace ramflow
