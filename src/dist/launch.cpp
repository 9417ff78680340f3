// `ramflow launch`: local processes of one data-parallel run (see include/ramflow/launch.h).
#include "ramflow/launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "ramflow/errors.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

volatile sig_atomic_t g_forward = 0;  // a signal to pass on to the ranks
void remember(int signo) { g_forward = signo; }

// The last `n` lines of a file.
std::string tail(const std::string& path, int n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (size_t i = lines.size() > static_cast<size_t>(n) ? lines.size() - n : 0; i < lines.size();
       ++i)
    out += "    " + lines[i] + "\n";
  return out;
}

std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    return "was killed by signal " + std::to_string(s) + " (" + strsignal(s) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

}  // namespace

int free_port(const std::string& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw IOError(std::string("launch: no socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  if (::inet_pton(AF_INET, addr.c_str(), &a.sin_addr) != 1) {
    ::close(fd);
    throw ConfigError("--master-addr '" + addr + "': not an IPv4 address");
  }
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw IOError("launch: no free port on " + addr + ": " + why);
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

int launch(const std::vector<std::string>& argv, const LaunchOptions& options, std::ostream& log) {
  if (argv.size() < 2) throw ConfigError("ramflow launch: no subcommand to run");
  if (options.nproc < 1 || options.nproc > 1024)
    throw ConfigError("--nproc " + std::to_string(options.nproc) + ": expected 1 to 1024");
  if (options.master_port < 0 || options.master_port > 65535)
    throw ConfigError("--master-port " + std::to_string(options.master_port) +
                      ": expected 0 (a free port) to 65535");
  const int port = options.master_port > 0 ? options.master_port : free_port(options.master_addr);
  std::string logs = options.logs;
  bool own_logs = false;
  if (logs.empty()) {
    std::string pattern = (fs::temp_directory_path() / "ramflow-launch-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
      throw IOError("launch: cannot make a folder for the ranks' logs");
    logs = pattern;
    own_logs = true;
  } else {
    std::error_code ec;
    fs::create_directories(logs, ec);
    if (ec) throw IOError("--logs " + logs + ": " + ec.message());
  }
  auto log_of = [&](int r) {
    return (fs::path(logs) / ("rank-" + std::to_string(r) + ".log")).string();
  };

  // Pass SIGINT and SIGTERM on to the ranks instead of ending here.
  struct sigaction on {
  }, old_int{}, old_term{};
  on.sa_handler = remember;
  sigemptyset(&on.sa_mask);
  sigaction(SIGINT, &on, &old_int);
  sigaction(SIGTERM, &on, &old_term);
  g_forward = 0;

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<pid_t> pids;
  for (int r = 0; r < options.nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : pids) ::kill(p, SIGKILL);
      throw IOError(std::string("launch: fork failed: ") + std::strerror(errno));
    }
    if (pid == 0) {  // the rank: torchrun's variables, its output, the program
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(options.nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(options.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", options.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
      if (r > 0) {
        const int fd = ::open(log_of(r).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
          ::dup2(fd, 1);
          ::dup2(fd, 2);
          ::close(fd);
        }
      }
      ::execv(args[0], args.data());
      std::fprintf(stderr, "ramflow launch: cannot run %s: %s\n", args[0], std::strerror(errno));
      ::_exit(127);
    }
    pids.push_back(pid);
  }

  std::vector<int> status(pids.size(), 0);
  std::vector<bool> done(pids.size(), false);
  int first_failed = -1, running = options.nproc, forwarded = 0;
  auto failed_at = std::chrono::steady_clock::now();
  bool termed = false, killed = false;
  while (running > 0) {
    if (g_forward != 0 && g_forward != forwarded) {
      forwarded = g_forward;
      for (size_t r = 0; r < pids.size(); ++r)
        if (!done[r]) ::kill(pids[r], forwarded);
    }
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (pids[r] == pid) {
          done[r] = true;
          status[r] = st;
          --running;
          if (exit_code(st) != 0 && first_failed < 0) {
            first_failed = static_cast<int>(r);
            failed_at = std::chrono::steady_clock::now();
          }
        }
      continue;
    }
    if (first_failed >= 0) {  // the others should end on their own, naming the lost rank
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - failed_at).count();
      if (!termed && waited > options.grace_seconds) {
        termed = true;
        for (size_t r = 0; r < pids.size(); ++r)
          if (!done[r]) ::kill(pids[r], SIGTERM);
      } else if (!killed && waited > options.grace_seconds + 10) {
        killed = true;
        for (size_t r = 0; r < pids.size(); ++r)
          if (!done[r]) ::kill(pids[r], SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);

  int code = 0;
  for (size_t r = 0; r < pids.size(); ++r) {
    if (exit_code(status[r]) == 0) continue;
    if (forwarded != 0 && exit_code(status[r]) == 128 + forwarded) {  // stopped as asked
      if (code == 0 || r == 0) code = exit_code(status[r]);
      continue;
    }
    if (code == 0 || r == 0) code = exit_code(status[r]);
    log << "ramflow launch: rank " << r << " " << how_it_ended(status[r]);
    if (r > 0)
      log << "; the end of its output (" << log_of(static_cast<int>(r)) << "):\n"
          << tail(log_of(static_cast<int>(r)), 12);
    else
      log << "\n";
  }
  if (code == 0 && own_logs) {
    std::error_code ec;
    fs::remove_all(logs, ec);
  }
  if (first_failed >= 0 && exit_code(status[0]) == 0) code = exit_code(status[first_failed]);
  return code;
}

}  // namespace ramflow
