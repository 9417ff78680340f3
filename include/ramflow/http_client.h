#pragma once
// A small HTTP/1.1 client for reward servers: POST of a JSON body over plain http (loopback or a
// private network; put a TLS-terminating proxy in front of a server elsewhere). What a trainer that
// runs for days needs of it:
//   - a connect timeout and a read timeout (the whole response must arrive within it);
//   - bounded retries with exponential backoff and jitter on transient faults: the server down
//     (connection refused), a timeout, a dropped connection, 429 and 5xx; never on other 4xx;
//   - a response size limit, checked against Content-Length before reading and while reading;
//   - redirects followed only to the same host and port (at most 3), never to another host;
//   - an optional bearer token (the caller reads it from an environment variable; it is sent in the
//     Authorization header and appears in no message).
// Errors are RemoteError naming the URL and what went wrong.
#include <string>

#include <torch/arg.h>

#include "ramflow/errors.h"

namespace ramflow {

/// A remote service failed (after its retries) or answered something unusable.
class RemoteError : public Error {
 public:
  using Error::Error;
};

struct HttpOptions {
  TORCH_ARG(double, connect_timeout) = 5.0;  // seconds to establish the connection
  TORCH_ARG(double, read_timeout) = 60.0;    // seconds from the request to the end of the response
  TORCH_ARG(int64_t, retries) = 3;           // extra attempts on transient faults
  TORCH_ARG(double, backoff) = 0.5;          // first retry after backoff * U(0.5, 1.5) s, doubling
  TORCH_ARG(int64_t, max_response_bytes) = 64 << 20;
  TORCH_ARG(std::string,
            bearer_token) = "";  // sent as "Authorization: Bearer <token>" when non-empty
};

/// The parts of an http URL: "http://host[:port][/path]".
struct HttpUrl {
  std::string host;
  int port = 80;
  std::string path = "/";
  std::string text() const;  // "http://host:port/path"
};
/// Parses an http URL; ConfigError naming it if it is not one (https is refused with the reason).
HttpUrl parse_http_url(const std::string& url);

struct HttpResponse {
  int status = 0;
  std::string body;
  int attempts = 0;  // attempts made (1 + retries used)
};

/// POSTs `body` (application/json) to `url`; returns the 200 response. Any other final status, or a
/// fault that outlasts the retries, throws RemoteError naming the URL (and the server's "error"
/// text when its body carries one).
HttpResponse http_post_json(const std::string& url, const std::string& body,
                            const HttpOptions& options);

}  // namespace ramflow
