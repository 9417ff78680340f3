// A small HTTP/1.1 client for reward servers (see include/ramflow/http_client.h).
#include "ramflow/http_client.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace ramflow {
namespace {

using Clock = std::chrono::steady_clock;

// A fault worth another attempt (the server down, slow, or failing for now), or not.
struct Fault {
  std::string what;
  bool transient = true;
};

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

int remaining_ms(Clock::time_point deadline) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(ms, 1 << 30)));
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

// A connected non-blocking socket to host:port within the connect timeout.
int connect_to(const HttpUrl& url, double timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(url.port);
  if (const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    throw Fault{"cannot resolve host '" + url.host + "' (" + gai_strerror(rc) + ")"};
  std::string last = "no address";
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout));
  for (addrinfo* a = found; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    if (errno == EINPROGRESS) {
      if (wait_for(fd, POLLOUT, deadline)) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0) {
          ::freeaddrinfo(found);
          return fd;
        }
        last = std::strerror(err);
      } else {
        last = "connect timed out after " + std::to_string(timeout) + " s";
      }
    } else {
      last = std::strerror(errno);
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  throw Fault{"cannot connect (" + last + ")"};
}

void send_all(int fd, const std::string& data, Clock::time_point deadline) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLOUT, deadline)) throw Fault{"timed out sending the request"};
      continue;
    }
    throw Fault{std::string("connection lost while sending (") + std::strerror(errno) + ")"};
  }
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

struct RawResponse {
  int status = 0;
  std::string location;
  std::string body;
};

// Reads one response (status line, headers, body by Content-Length, chunked, or to the close).
RawResponse read_response(int fd, Clock::time_point deadline, int64_t limit, double read_timeout) {
  std::string buf;
  auto fill = [&]() -> bool {  // false at the end of the stream
    char chunk[65536];
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n > 0) {
        buf.append(chunk, static_cast<size_t>(n));
        if (static_cast<int64_t>(buf.size()) > limit + 65536)
          throw Fault{"response larger than the limit of " + std::to_string(limit) + " bytes",
                      false};
        return true;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!wait_for(fd, POLLIN, deadline))
          throw Fault{"no complete response within the read timeout of " +
                      std::to_string(read_timeout) + " s"};
        continue;
      }
      throw Fault{std::string("connection lost while reading (") + std::strerror(errno) + ")"};
    }
  };
  size_t head_end;
  while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > 65536) throw Fault{"response headers longer than 64 KiB", false};
    if (!fill())
      throw Fault{buf.empty() ? "the server closed the connection without a response"
                              : "the response ended inside its headers"};
  }
  RawResponse r;
  const std::string head = buf.substr(0, head_end);
  buf.erase(0, head_end + 4);
  size_t eol = head.find("\r\n");
  const std::string status_line = head.substr(0, eol);
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12)
    throw Fault{"not an HTTP response (status line '" + status_line.substr(0, 40) + "')", false};
  try {
    r.status = std::stoi(status_line.substr(9, 3));
  } catch (const std::exception&) {
    throw Fault{"bad status line '" + status_line.substr(0, 40) + "'", false};
  }
  int64_t length = -1;
  bool chunked = false;
  while (eol != std::string::npos) {
    const size_t next = head.find("\r\n", eol + 2);
    const std::string line =
        head.substr(eol + 2, next == std::string::npos ? std::string::npos : next - eol - 2);
    eol = next;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = lower(line.substr(0, colon));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t") + 1);
    if (name == "content-length") {
      try {
        length = std::stoll(value);
      } catch (const std::exception&) {
        throw Fault{"bad Content-Length '" + value + "'", false};
      }
      if (length < 0) throw Fault{"bad Content-Length '" + value + "'", false};
      if (length > limit)
        throw Fault{"response of " + value + " bytes exceeds the limit of " +
                        std::to_string(limit) + " bytes",
                    false};
    } else if (name == "transfer-encoding") {
      chunked = lower(value).find("chunked") != std::string::npos;
    } else if (name == "location") {
      r.location = value;
    }
  }
  if (chunked) {
    std::string body;
    for (;;) {
      size_t line_end;
      while ((line_end = buf.find("\r\n")) == std::string::npos)
        if (!fill()) throw Fault{"the response ended inside a chunk"};
      int64_t size = 0;
      try {
        size = std::stoll(buf.substr(0, line_end), nullptr, 16);
      } catch (const std::exception&) {
        throw Fault{"bad chunk size", false};
      }
      if (size < 0 || static_cast<int64_t>(body.size()) + size > limit)
        throw Fault{"response larger than the limit of " + std::to_string(limit) + " bytes", false};
      buf.erase(0, line_end + 2);
      if (size == 0) break;
      while (static_cast<int64_t>(buf.size()) < size + 2)
        if (!fill()) throw Fault{"the response ended inside a chunk"};
      body.append(buf, 0, static_cast<size_t>(size));
      buf.erase(0, static_cast<size_t>(size) + 2);
    }
    r.body = std::move(body);
  } else if (length >= 0) {
    while (static_cast<int64_t>(buf.size()) < length)
      if (!fill())
        throw Fault{"the response ended after " + std::to_string(buf.size()) + " of " +
                    std::to_string(length) + " bytes"};
    r.body = buf.substr(0, static_cast<size_t>(length));
  } else {
    while (fill()) {
    }
    if (static_cast<int64_t>(buf.size()) > limit)
      throw Fault{"response larger than the limit of " + std::to_string(limit) + " bytes", false};
    r.body = std::move(buf);
  }
  return r;
}

// The server's {"error": "..."} text, or the body's start.
std::string error_text(const std::string& body) {
  try {
    const auto j = nlohmann::json::parse(body);
    if (j.is_object() && j.contains("error") && j["error"].is_string())
      return j["error"].get<std::string>().substr(0, 300);
  } catch (const nlohmann::json::exception&) {
  }
  std::string head = body.substr(0, 120);
  for (char& c : head)
    if (static_cast<unsigned char>(c) < 32) c = ' ';
  return head;
}

// One attempt: connect, send, read; follows same-host redirects.
RawResponse attempt(HttpUrl url, const std::string& body, const HttpOptions& o,
                    const std::string& original) {
  for (int hop = 0;; ++hop) {
    Socket sock(connect_to(url, o.connect_timeout()));
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(o.read_timeout()));
    std::string request =
        "POST " + url.path + " HTTP/1.1\r\nHost: " + url.host + ":" + std::to_string(url.port) +
        "\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\nConnection: close\r\n";
    if (!o.bearer_token().empty()) request += "Authorization: Bearer " + o.bearer_token() + "\r\n";
    request += "\r\n";
    send_all(sock.fd(), request, deadline);
    send_all(sock.fd(), body, deadline);
    RawResponse r = read_response(sock.fd(), deadline, o.max_response_bytes(), o.read_timeout());
    const bool redirect =
        r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308;
    if (!redirect) return r;
    if (hop >= 3) throw Fault{"more than 3 redirects", false};
    if (r.location.empty())
      throw Fault{"redirect " + std::to_string(r.status) + " without a Location", false};
    HttpUrl next = url;
    if (r.location[0] == '/') {
      next.path = r.location;
    } else {
      try {
        next = parse_http_url(r.location);
      } catch (const ConfigError&) {
        throw Fault{"redirect to '" + r.location.substr(0, 200) +
                        "' refused: not an http URL on the same host",
                    false};
      }
      if (next.host != url.host || next.port != url.port)
        throw Fault{"redirect to " + next.host + ":" + std::to_string(next.port) +
                        " refused: ramflow never follows a redirect to another host (" + original +
                        ")",
                    false};
    }
    url = next;
  }
}

}  // namespace

std::string HttpUrl::text() const { return "http://" + host + ":" + std::to_string(port) + path; }

HttpUrl parse_http_url(const std::string& url) {
  if (url.rfind("https://", 0) == 0)
    throw ConfigError("reward URL '" + url +
                      "': https is not supported; serve the reward over http on loopback or a "
                      "private network, or put a TLS-terminating proxy in front of it");
  if (url.rfind("http://", 0) != 0)
    throw ConfigError("reward URL '" + url + "': expected http://host[:port][/path]");
  HttpUrl u;
  std::string rest = url.substr(7);
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) u.path = rest.substr(slash);
  if (authority.find('@') != std::string::npos)
    throw ConfigError("reward URL '" + url +
                      "': credentials in the URL are not supported (use a bearer token)");
  if (!authority.empty() && authority[0] == '[') {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string::npos)
      throw ConfigError("reward URL '" + url + "': unterminated [IPv6] address");
    u.host = authority.substr(1, close - 1);
    authority.erase(0, close + 1);
    if (!authority.empty() && authority[0] != ':')
      throw ConfigError("reward URL '" + url + "': bad port");
  } else {
    const size_t colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    authority = colon == std::string::npos ? "" : authority.substr(colon);
  }
  if (!authority.empty()) {
    const std::string port = authority.substr(1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
        std::stoi(port) < 1 || std::stoi(port) > 65535)
      throw ConfigError("reward URL '" + url + "': bad port '" + port + "'");
    u.port = std::stoi(port);
  }
  if (u.host.empty()) throw ConfigError("reward URL '" + url + "': no host");
  for (char c : u.path + u.host)
    if (static_cast<unsigned char>(c) <= 32 || c == 127)
      throw ConfigError("reward URL '" + url + "': a space or control character");
  return u;
}

HttpResponse http_post_json(const std::string& url_text, const std::string& body,
                            const HttpOptions& o) {
  const HttpUrl url = parse_http_url(url_text);
  // Jitter only spreads retries of many clients apart; it never touches a result, so any seed will
  // do.
  thread_local std::mt19937_64 jitter(std::random_device{}());
  std::uniform_real_distribution<double> spread(0.5, 1.5);
  std::string last;
  int64_t attempts = 0;
  for (int64_t k = 0; k <= o.retries(); ++k) {
    ++attempts;
    if (k > 0) {
      const double wait = o.backoff() * std::pow(2.0, static_cast<double>(k - 1)) * spread(jitter);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
    try {
      RawResponse r = attempt(url, body, o, url_text);
      if (r.status == 200) return {r.status, std::move(r.body), static_cast<int>(k + 1)};
      last = "HTTP " + std::to_string(r.status) + ": " + error_text(r.body);
      if (r.status != 429 && r.status < 500)
        break;  // the request is wrong: another attempt will not help
    } catch (const Fault& f) {
      last = f.what;
      if (!f.transient) break;
    }
  }
  throw RemoteError("reward server " + url_text + ": " + last + " (" + std::to_string(attempts) +
                    (attempts == 1 ? " attempt)" : " attempts)"));
}

}  // namespace ramflow
