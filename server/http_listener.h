// File: server/http_listener.h
//
// The operations HTTP/1.1 listener (Boost.Beast) that load balancers and
// Prometheus talk to:
//
//   GET /metrics  200, the registry in the text format 0.0.4
//   GET /healthz  200 "ok" while the process runs
//   GET /readyz   200 "ready" when the readiness callback returns OK, else
//                 503 with the status message as the body
//   Options::handlers  extra GET paths answered by a callback (the status
//                 page, server/status_page.h)
//   other paths   404;  methods other than GET/HEAD  405 (Allow: GET, HEAD)
//   a header block over max_header_bytes  431;  any request body  413
//
// Query strings are ignored for routing. HEAD gets the GET headers without a
// body. Connections are kept alive when the client asks; errors close them.
//
// Robustness: everything runs asynchronously on one io_context thread owned
// by the listener. Each request must arrive within read_timeout (measured
// from when the listener starts waiting for it, so idle keep-alive
// connections are closed too) and each response must be written within
// write_timeout; a client that stalls only holds its own connection. At most
// max_connections are open at once: further connections are accepted and
// closed immediately (counted in chstream_http_connections_rejected_total).
// Requests are counted in chstream_http_requests_total{path,code}.
//
// Thread-safety: Start, port and Stop may be called from any thread. The
// readiness callback and the registry's collectors run on the listener
// thread, one request at a time, and must not block for long.
//
//   CHS_ASSIGN_OR_RETURN(
//       std::unique_ptr<HttpListener> http,
//       HttpListener::Start({.address = "127.0.0.1:9464"}, &registry,
//                           [&] { return Readiness(); }));
//   ... http->port() ...
//   http->Stop();
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/metrics.h"

namespace chstream::server {

class HttpSession;  // one connection (http_listener.cc)

// What an extra route (HttpListener::Options::handlers) answers.
struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Dynamic pages must not be served from a cache.
  std::string cache_control = "no-store";
};

class HttpListener {
 public:
  // Runs on the listener thread, one request at a time: must not block for
  // long.
  using Handler = std::function<HttpResponse()>;

  struct Options {
    // "host:port", "[v6]:port" or ":port" (all interfaces); the host must be
    // an IP literal or "localhost". Port 0 picks a free port (see port()).
    std::string address = "127.0.0.1:9464";
    absl::Duration read_timeout = absl::Seconds(10);
    absl::Duration write_timeout = absl::Seconds(10);
    size_t max_header_bytes = 8 * 1024;
    size_t max_connections = 64;
    // Extra GET/HEAD paths (exact match, without the query string) and their
    // handlers. They cannot replace /metrics, /healthz or /readyz. Each path
    // is its own label value in chstream_http_requests_total.
    std::map<std::string, Handler> handlers = {};
  };
  // OK means ready; otherwise /readyz answers 503 with the message.
  using ReadinessFn = std::function<absl::Status()>;

  // Binds, listens and starts the listener thread. `registry` must outlive
  // the listener; an empty `readiness` means always ready. Errors:
  // INVALID_ARGUMENT for a malformed address, UNAVAILABLE when the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Start(
      Options options, MetricsRegistry* registry, ReadinessFn readiness);

  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;
  ~HttpListener();  // Stop()

  // The bound port.
  int port() const;

  // Stops accepting, closes every open connection (in-flight responses are
  // abandoned) and joins the thread. Idempotent. Must not be called from the
  // readiness callback or a collector (they run on the listener thread).
  void Stop();

 private:
  friend class HttpSession;
  struct Impl;
  explicit HttpListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Splits "host:port" as HttpListener::Options::address describes; exposed
// for tests and flag validation.
absl::Status ParseListenAddress(const std::string& address, std::string* host,
                                int* port);

}  // namespace chstream::server
