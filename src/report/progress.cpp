// Progress bar / progress lines (see include/ramflow/progress.h).
#include "ramflow/progress.h"

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <sstream>

#include <unistd.h>

namespace ramflow {

bool stderr_is_terminal() { return ::isatty(2) == 1; }

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600,
                  (static_cast<int>(s) / 60) % 60);
  }
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::ostream& out, bool tty, int64_t first)
    : label_(std::move(label)),
      total_(total > 0 ? total : 1),
      first_(std::clamp<int64_t>(first, 0, total_)),
      out_(out),
      tty_(tty),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - std::chrono::seconds(1)),
      next_line_(first_) {}

void Progress::update(int64_t done, const std::string& status) {
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
    last_draw_ = now;
    draw(done, status, false);
  } else if (done >= next_line_) {
    draw(done, status, false);
    next_line_ = done + std::max<int64_t>(1, total_ / 10);
  }
}

void Progress::note(const std::string& text) {
  if (tty_) out_ << "\r\033[K";  // clear the bar's line
  out_ << text << '\n';
  out_.flush();
  last_draw_ = start_ - std::chrono::seconds(1);  // redraw at the next update
}

void Progress::finish(const std::string& status) { draw(total_, status, true); }

void Progress::stop(int64_t done, const std::string& status) { draw(done, status, true); }

void Progress::draw(int64_t done, const std::string& status, bool final) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  std::ostringstream line;
  line << label_ << ' ';
  if (tty_) {
    constexpr int kWidth = 28;
    const int filled = static_cast<int>(frac * kWidth);
    line << '[' << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] ";
  }
  line << done << '/' << total_ << ' ' << std::setw(3) << static_cast<int>(frac * 100) << "%  "
       << format_duration(elapsed);
  // ETA = the seconds per unit done in this process x the units left.
  if (!final && done > first_ && done < total_)
    line << "  ETA "
         << format_duration(elapsed / static_cast<double>(done - first_) *
                            static_cast<double>(total_ - done));
  if (!status.empty()) line << "  " << status;
  if (tty_) {
    out_ << '\r' << line.str() << "\033[K";
    if (final) out_ << '\n';
  } else {
    out_ << line.str() << '\n';
  }
  out_.flush();
}

}  // namespace ramflow
