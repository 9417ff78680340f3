// Atomic file writes (see include/ramflow/io.h).
#include "ramflow/io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

#include "ramflow/errors.h"

namespace ramflow {

void prepare_output_file(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  const fs::path file(path);
  const std::string named = what + " " + path + ": ";
  if (file.filename().empty() || fs::is_directory(file))
    throw InputError(named + "a folder; name a file (in it)");
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw InputError(named + "cannot create the folder " + dir.string() + " (" + ec.message() +
                     ")");
  const std::string probe =
      (dir / ("." + file.filename().string() + ".probe-" + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) throw InputError(named + "cannot write there (" + std::strerror(errno) + ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw IOError(path + ": cannot write (" + std::strerror(errno) + ")");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw IOError(path + ": write failed (" + why + ")");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw IOError(path + ": write failed (" + std::strerror(errno) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw IOError(path + ": cannot rename into place (" + why + ")");
  }
  // The rename is durable once the directory's entry is: fsync the directory too (a filesystem that
  // cannot sync a directory says EINVAL, and has nothing to sync).
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    if (rc != 0 && err != EINVAL)
      throw IOError(path + ": cannot sync its directory (" + std::strerror(err) + ")");
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open file");
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw InputError(path + ": read failed");
  return s.str();
}

namespace {
// nftw visits children before their directory (FTW_DEPTH) and does not follow links (FTW_PHYS);
// remove() deletes a file, a link or an (by then empty) directory. The first failure stops the
// walk.
thread_local std::string failed_entry;
int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  if (std::remove(path) == 0 || errno == ENOENT) return 0;
  failed_entry = std::string(path) + " (" + std::strerror(errno) + ")";
  return 1;
}
}  // namespace

void remove_tree(const std::string& path) {
  failed_entry.clear();
  if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0) return;
  if (failed_entry.empty() && errno == ENOENT) return;  // nothing there
  const std::string what =
      failed_entry.empty() ? path + " (" + std::strerror(errno) + ")" : failed_entry;
  throw IOError("cannot remove " + what);
}

}  // namespace ramflow
