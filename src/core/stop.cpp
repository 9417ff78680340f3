// Graceful stops on SIGINT and SIGTERM (see include/ramflow/stop.h).
#include "ramflow/stop.h"

#include <atomic>
#include <csignal>
#include <cstdio>

namespace ramflow {
namespace {
// Lock-free, so that a signal handler may store to it.
std::atomic<int> requested{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int signo) { requested.store(signo); }
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // the second signal gets the default action
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int stop_signal() { return requested.load(); }
void request_stop(int signo) { requested.store(signo); }
void clear_stop() { requested.store(0); }

const char* signal_name(int signo) {
  switch (signo) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default: {
      static thread_local char text[32];
      std::snprintf(text, sizeof(text), "signal %d", signo);
      return text;
    }
  }
}

}  // namespace ramflow
