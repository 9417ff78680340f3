#pragma once
// `ramflow launch`: N local processes of one data-parallel run (docs/distributed.md), as torchrun
// starts them: each with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT), so that the same command runs unchanged under torchrun.
#include <ostream>
#include <string>
#include <vector>

namespace ramflow {

struct LaunchOptions {
  int nproc = 2;  // processes on this machine
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port of this machine
  /// Where ranks 1 .. N-1 write their output (rank-<r>.log); empty: a fresh folder under the
  /// temporary directory, removed when every rank succeeds.
  std::string logs;
  /// How long the other ranks may take to end once one failed (they fail at their next collective,
  /// naming it) before they are stopped: SIGTERM, then SIGKILL 10 s later.
  double grace_seconds = 60;
};

/// Starts `argv` (argv[0] the program) nproc times and waits for them. Rank 0's output is this
/// process's; the others' goes to their log files, whose last lines are written to `log` for each
/// rank that failed. SIGINT and SIGTERM received here are passed on to every rank (each stops after
/// its step with one checkpoint, written by rank 0). Returns the exit status: rank 0's if it
/// failed, else the first failed rank's (128 + N for a rank ended by signal N), else 0. Throws
/// ConfigError for options out of range, IOError when a process cannot be started.
int launch(const std::vector<std::string>& argv, const LaunchOptions& options, std::ostream& log);

/// A TCP port of `addr` that was free a moment ago (bound to port 0, then released).
int free_port(const std::string& addr = "127.0.0.1");

}  // namespace ramflow
