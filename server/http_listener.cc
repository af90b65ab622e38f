#include "server/http_listener.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using ErrorCode = boost::system::error_code;

constexpr char kTextPlain[] = "text/plain; charset=utf-8";
// How long, and how much, to keep reading after an error response before
// closing, so that unread request bytes do not turn the close into a reset
// that destroys the response at the client ("lingering close").
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 64 * 1024;
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

std::chrono::milliseconds ToChrono(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

bool IsBuiltInPath(std::string_view path) {
  return path == "/metrics" || path == "/healthz" || path == "/readyz";
}

}  // namespace

absl::Status ParseListenAddress(const std::string& address, std::string* host,
                                int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" is not host:port"));
  }
  std::string h = address.substr(0, colon);
  const std::string p = address.substr(colon + 1);
  int parsed = -1;
  if (p.empty() || p.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(p, &parsed) || parsed > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" has an invalid port"));
  }
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address \"", address, "\": write IPv6 hosts as [addr]:port"));
  }
  if (h.empty()) h = "0.0.0.0";
  if (h == "localhost") h = "127.0.0.1";
  ErrorCode ec;
  asio::ip::make_address(h, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address \"", address, "\": host must be an IP address or localhost"));
  }
  *host = h;
  *port = parsed;
  return absl::OkStatus();
}

class HttpSession;

struct HttpListener::Impl {
  Impl(Options o, MetricsRegistry* r, ReadinessFn ready)
      : options(std::move(o)),
        registry(r),
        readiness(std::move(ready)),
        rejected(
            r->AddCounter("chstream_http_connections_rejected_total",
                          "Operations HTTP connections closed at once because "
                          "max_connections were open.")) {}

  void DoAccept();
  void OnAccept(ErrorCode ec, tcp::socket socket);
  void CloseAll();
  // Builds the response to a complete GET/HEAD request.
  void Route(const http::request<http::empty_body>& req,
             http::response<http::string_body>* res);
  void CountRequest(std::string_view path, unsigned code);
  // The path label of chstream_http_requests_total: the built-in and
  // configured paths, else "other" (a closed set, so that clients cannot
  // create series at will).
  std::string_view PathLabel(std::string_view path) const;

  const Options options;
  MetricsRegistry* const registry;
  const ReadinessFn readiness;
  Counter& rejected;

  absl::Mutex stop_mu;
  bool stopped ABSL_GUARDED_BY(stop_mu) = false;

  // Listener thread only. Declared before the io_context so that handlers
  // it might still hold are destroyed while these exist.
  bool closing = false;
  std::set<HttpSession*> sessions;
  std::map<std::pair<std::string, unsigned>, Counter*> request_counters;

  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_retry{ioc};
  int port = 0;
  std::thread thread;
};

// One connection: read a request header, answer, repeat while kept alive.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(HttpListener::Impl* listener, tcp::socket socket)
      : listener_(listener),
        stream_(std::move(socket)),
        // Room for a full header block plus one read's worth of the next.
        buffer_(listener->options.max_header_bytes + 16 * 1024) {
    listener_->sessions.insert(this);
  }
  ~HttpSession() { listener_->sessions.erase(this); }

  void Start() { ReadRequest(); }

  // Cancels everything pending; the handlers then drop the last reference.
  void Close() {
    ErrorCode ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(listener_->options.max_header_bytes));
    stream_.expires_after(ToChrono(listener_->options.read_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  void OnRead(ErrorCode ec, size_t /*bytes*/) {
    if (listener_->closing) return;
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      listener_->CountRequest("", 431);
      Error(http::status::request_header_fields_too_large,
            "request header too large\n");
      return;
    }
    if (ec &&
        ec.category() ==
            http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
      listener_->CountRequest("", 400);
      Error(http::status::bad_request, "malformed request\n");
      return;
    }
    if (ec) {  // clean close, reset, timeout: nobody to answer
      Close();
      return;
    }
    const http::request<http::empty_body>& req = parser_->get();
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      listener_->CountRequest(path, 405);
      res_ = {};
      res_.set(http::field::allow, "GET, HEAD");
      Respond(http::status::method_not_allowed, "method not allowed\n",
              /*keep_alive=*/false);
      return;
    }
    if (!parser_->is_done()) {  // Content-Length > 0 or chunked
      listener_->CountRequest(path, 413);
      Error(http::status::payload_too_large, "request bodies not accepted\n");
      return;
    }
    res_ = {};
    res_.version(req.version());
    listener_->Route(req, &res_);
    listener_->CountRequest(path, res_.result_int());
    res_.keep_alive(req.keep_alive());
    res_.set(http::field::server, "chstream");
    res_.prepare_payload();
    if (req.method() == http::verb::head) res_.body().clear();
    Write();
  }

  // An error before a usable request: answer and close.
  void Error(http::status status, std::string_view body) {
    res_ = {};
    Respond(status, body, /*keep_alive=*/false);
  }

  void Respond(http::status status, std::string_view body, bool keep_alive) {
    res_.version(11);
    res_.result(status);
    res_.set(http::field::server, "chstream");
    res_.set(http::field::content_type, kTextPlain);
    res_.body() = std::string(body);
    res_.keep_alive(keep_alive);
    res_.prepare_payload();
    Write();
  }

  void Write() {
    stream_.expires_after(ToChrono(listener_->options.write_timeout));
    http::async_write(
        stream_, res_,
        beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this()));
  }

  void OnWrite(ErrorCode ec, size_t /*bytes*/) {
    if (listener_->closing) return;
    if (ec) {
      Close();
      return;
    }
    if (res_.keep_alive()) {
      ReadRequest();
      return;
    }
    // Half-close, then discard what the client still sends until it closes
    // (bounded in time and bytes).
    ErrorCode ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    Linger();
  }

  void Linger() {
    stream_.async_read_some(asio::buffer(discard_), [self = shared_from_this()](
                                                        ErrorCode ec,
                                                        size_t n) {
      self->lingered_ += n;
      if (ec || self->listener_->closing || self->lingered_ > kLingerBytes) {
        self->Close();
        return;
      }
      self->Linger();
    });
  }

  HttpListener::Impl* const listener_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::response<http::string_body> res_;
  char discard_[4096];
  size_t lingered_ = 0;
};

void HttpListener::Impl::DoAccept() {
  acceptor.async_accept([this](ErrorCode ec, tcp::socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void HttpListener::Impl::OnAccept(ErrorCode ec, tcp::socket socket) {
  if (closing) return;
  if (ec) {
    // E.g. out of file descriptors: retry shortly instead of spinning.
    log::Warning("metrics listener: accept failed", {{"error", ec.message()}});
    accept_retry.expires_after(kAcceptRetryDelay);
    accept_retry.async_wait([this](ErrorCode wait_ec) {
      if (!wait_ec && !closing) DoAccept();
    });
    return;
  }
  if (sessions.size() >= options.max_connections) {
    rejected.Increment();
    ErrorCode ignored;
    socket.close(ignored);
  } else {
    std::make_shared<HttpSession>(this, std::move(socket))->Start();
  }
  DoAccept();
}

void HttpListener::Impl::CloseAll() {
  closing = true;
  ErrorCode ignored;
  acceptor.close(ignored);
  accept_retry.cancel();
  // Close() does not destroy sessions synchronously, but copy anyway.
  const std::vector<HttpSession*> open(sessions.begin(), sessions.end());
  for (HttpSession* s : open) s->Close();
}

void HttpListener::Impl::Route(const http::request<http::empty_body>& req,
                               http::response<http::string_body>* res) {
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  res->set(http::field::content_type, kTextPlain);
  if (path == "/metrics") {
    res->result(http::status::ok);
    res->set(http::field::content_type, kMetricsContentType);
    res->body() = registry->Render();
  } else if (path == "/healthz") {
    res->result(http::status::ok);
    res->body() = "ok\n";
  } else if (path == "/readyz") {
    const absl::Status ready = readiness ? readiness() : absl::OkStatus();
    if (ready.ok()) {
      res->result(http::status::ok);
      res->body() = "ready\n";
    } else {
      res->result(http::status::service_unavailable);
      res->body() = absl::StrCat("not ready: ", ready.message(), "\n");
    }
  } else if (auto it = options.handlers.find(std::string(path));
             it != options.handlers.end()) {
    HttpResponse answer = it->second();
    res->result(static_cast<http::status>(answer.status));
    res->set(http::field::content_type, answer.content_type);
    if (!answer.cache_control.empty()) {
      res->set(http::field::cache_control, answer.cache_control);
    }
    res->body() = std::move(answer.body);
  } else {
    res->result(http::status::not_found);
    res->body() = "not found\n";
  }
}

std::string_view HttpListener::Impl::PathLabel(std::string_view path) const {
  if (IsBuiltInPath(path)) return path;
  if (auto it = options.handlers.find(std::string(path));
      it != options.handlers.end()) {
    return it->first;
  }
  return "other";
}

void HttpListener::Impl::CountRequest(std::string_view path, unsigned code) {
  auto key = std::make_pair(std::string(PathLabel(path)), code);
  auto it = request_counters.find(key);
  if (it == request_counters.end()) {
    Counter& c = registry->AddCounter(
        "chstream_http_requests_total",
        "Requests to the operations HTTP listener by path and status code.",
        {{"path", key.first}, {"code", absl::StrCat(code)}});
    it = request_counters.emplace(std::move(key), &c).first;
  }
  it->second->Increment();
}

HttpListener::HttpListener(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

HttpListener::~HttpListener() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::Start(
    Options options, MetricsRegistry* registry, ReadinessFn readiness) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseListenAddress(options.address, &host, &port);
      !s.ok()) {
    return s;
  }
  if (options.max_connections == 0 || options.max_header_bytes == 0) {
    return absl::InvalidArgumentError(
        "max_connections and max_header_bytes must be positive");
  }
  for (const auto& [path, handler] : options.handlers) {
    if (path.empty() || path[0] != '/' || IsBuiltInPath(path) || !handler) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid extra route \"", path, "\""));
    }
  }
  auto impl = std::make_unique<Impl>(std::move(options), registry,
                                     std::move(readiness));
  const tcp::endpoint endpoint(asio::ip::make_address(host),
                               static_cast<unsigned short>(port));
  ErrorCode ec;
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec)
    impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", impl->options.address, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint(ec).port();
  impl->DoAccept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    SetCurrentThreadName("chs-http");
    // Handlers do not throw; this is the third-party boundary regardless.
    try {
      raw->ioc.run();
    } catch (const std::exception& e) {
      log::Error("metrics listener stopped by an exception",
                 {{"error", e.what()}});
    }
  });
  return std::unique_ptr<HttpListener>(new HttpListener(std::move(impl)));
}

int HttpListener::port() const { return impl_->port; }

void HttpListener::Stop() {
  {
    absl::MutexLock lock(&impl_->stop_mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  Impl* impl = impl_.get();
  asio::post(impl->ioc, [impl] { impl->CloseAll(); });
  // With the acceptor and every socket closed, run() returns once the
  // cancelled handlers have run.
  if (impl->thread.joinable()) impl->thread.join();
}

}  // namespace chstream::server
