#pragma once
// A graceful stop on SIGINT or SIGTERM. The handlers only record the signal; a training loop checks
// stop_signal() between steps, finishes the step it is in, writes a checkpoint and returns. The
// library installs nothing by itself: the command-line tool calls install_stop_handlers() once. A
// second signal of the same kind takes its default action (a second Ctrl-C kills at once).
namespace ramflow {

/// Installs the SIGINT and SIGTERM handlers (idempotent).
void install_stop_handlers();
/// The signal that asked for a stop, or 0.
int stop_signal();
/// Asks for a stop as signal `signo` would (tests; another thread).
void request_stop(int signo);
/// Forgets a requested stop.
void clear_stop();
/// "SIGINT", "SIGTERM" or "signal N".
const char* signal_name(int signo);

}  // namespace ramflow
