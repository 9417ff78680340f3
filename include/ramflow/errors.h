#pragma once
// Error types. Library code throws; it never exits or prints. The CLI maps ConfigError and
// InputError (the user's input is wrong) to exit code 2 and every other error to exit code 1,
// printing the one-line message.
#include <stdexcept>
#include <string>

namespace ramflow {

/// Base of every error ramflow throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad configuration: unknown key or flag, wrong type, out-of-range value, impossible
/// combination. Raised before any compute; the message names the key and what was expected.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A missing, unreadable or corrupt file; the message names the path.
class IOError : public Error {
 public:
  using Error::Error;
};

/// A file or directory the user named is missing, unreadable, malformed or in the way (an existing
/// run directory, a checkpoint without the requested model). The message names the path and what is
/// wrong.
class InputError : public IOError {
 public:
  using IOError::IOError;
};

/// Training diverged: a non-finite reward, loss or gradient. The message names the step and
/// component.
class NumericalError : public Error {
 public:
  using Error::Error;
};

/// A data-parallel run lost one of its processes, or could not gather them: the message names the
/// rank (where it can be found) and the address.
class DistributedError : public Error {
 public:
  using Error::Error;
};

/// A run stopped on request (SIGINT or SIGTERM) after writing a checkpoint. The message says how to
/// continue; the CLI exits with 128 + the signal's number, as a shell reports a signal.
class Interrupted : public Error {
 public:
  Interrupted(const std::string& what, int signo) : Error(what), signal_(signo) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace ramflow
