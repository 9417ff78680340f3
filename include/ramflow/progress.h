#pragma once
// Progress for long work. On a terminal: one bar redrawn in place with rate, ETA and a live status
// (e.g. the reward). Otherwise (a log file, CI): a plain line every tenth of the work.
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace ramflow {

class Progress {
 public:
  /// `first`: the units done before this process (a resumed run); the rate and the ETA count only
  /// the units done since.
  Progress(std::string label, int64_t total, std::ostream& out, bool tty, int64_t first = 0);
  /// `done` units finished; `status` is appended (e.g. "reward 0.61").
  void update(int64_t done, const std::string& status = "");
  /// A line of its own (a warning) above the bar, which is redrawn below it on its next update.
  void note(const std::string& text);
  /// Ends the bar (a newline on a terminal) with a final status: all the work done.
  void finish(const std::string& status = "");
  /// Ends the bar at `done` units, short of the total: "finetune 3650/20000 18%  9.1s  stopped".
  void stop(int64_t done, const std::string& status = "stopped");

 private:
  void draw(int64_t done, const std::string& status, bool final);
  std::string label_;
  int64_t total_;
  int64_t first_;
  std::ostream& out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int64_t next_line_;  // plain mode: the next `done` that prints a line
};

/// True if file descriptor 2 (stderr) is a terminal.
bool stderr_is_terminal();

/// "12.3s", "4m05s", "1h02m".
std::string format_duration(double seconds);

}  // namespace ramflow
