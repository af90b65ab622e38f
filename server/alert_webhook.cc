#include "server/alert_webhook.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <optional>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "ingest/upstream_url.h"

namespace chstream::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// The outcome of one POST.
struct AttemptResult {
  bool done = false;
  int http_status = 0;  // 0 = no response
  std::string error;
};

template <typename Stream>
asio::awaitable<void> Exchange(Stream& stream, const ingest::UpstreamUrl& url,
                               const std::string& body, AttemptResult* out) {
  http::request<http::string_body> req{http::verb::post,
                                       url.base_path.empty() ? "/"
                                                             : url.base_path,
                                       11};
  req.set(http::field::host, url.HostHeader());
  req.set(http::field::user_agent, "chstream-alert/1");
  req.set(http::field::content_type, "application/json");
  req.set(http::field::connection, "close");
  req.body() = body;
  req.prepare_payload();
  beast::error_code ec;
  co_await http::async_write(stream, req,
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out->error = absl::StrCat("write: ", ec.message());
    co_return;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  co_await http::async_read(stream, buffer, parser,
                            asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out->error = absl::StrCat("read: ", ec.message());
    co_return;
  }
  out->http_status = static_cast<int>(parser.get().result_int());
}

asio::awaitable<void> Attempt(const ingest::UpstreamUrl& url,
                              ssl::context* ssl_ctx, const std::string& body,
                              AttemptResult* out) {
  auto executor = co_await asio::this_coro::executor;
  beast::error_code ec;
  tcp::resolver resolver(executor);
  tcp::resolver::results_type endpoints = co_await resolver.async_resolve(
      url.host, url.port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out->error = absl::StrCat("resolve ", url.host, ": ", ec.message());
    out->done = true;
    co_return;
  }
  beast::tcp_stream tcp_stream(executor);
  co_await tcp_stream.async_connect(
      endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out->error = absl::StrCat("connect ", url.HostHeader(), ": ", ec.message());
    out->done = true;
    co_return;
  }
  if (ssl_ctx == nullptr) {
    co_await Exchange(tcp_stream, url, body, out);
    tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    out->done = true;
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> tls(std::move(tcp_stream), *ssl_ctx);
  SSL* native = tls.native_handle();
  beast::error_code addr_ec;
  asio::ip::make_address(url.host, addr_ec);
  const bool is_ip = !addr_ec;
  if (!is_ip) SSL_set_tlsext_host_name(native, url.host.c_str());
  X509_VERIFY_PARAM* param = SSL_get0_param(native);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size());
  }
  SSL_set_verify(native, SSL_VERIFY_PEER, nullptr);
  co_await tls.async_handshake(ssl::stream_base::client,
                               asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out->error = absl::StrCat("TLS handshake: ", ec.message());
    out->done = true;
    co_return;
  }
  co_await Exchange(tls, url, body, out);
  out->done = true;
}

}  // namespace

struct AlertWebhook::Impl {
  Options options;
  ingest::UpstreamUrl url;
  std::unique_ptr<ssl::context> ssl_ctx;

  mutable absl::Mutex mu;
  std::deque<std::string> queue ABSL_GUARDED_BY(mu);
  bool stopping ABSL_GUARDED_BY(mu) = false;
  Stats stats ABSL_GUARDED_BY(mu);
  asio::io_context* current_io ABSL_GUARDED_BY(mu) = nullptr;
  std::thread thread;
  bool joined = false;  // guarded by stop_mu
  absl::Mutex stop_mu;

  // One POST with a fresh io_context, bounded by options.timeout.
  AttemptResult Post(const std::string& body) {
    asio::io_context io;
    {
      absl::MutexLock lock(&mu);
      if (stopping) return {true, 0, "stopped"};
      current_io = &io;
    }
    AttemptResult result;
    asio::co_spawn(io, Attempt(url, ssl_ctx.get(), body, &result),
                   asio::detached);
    io.run_for(ToChrono(options.timeout));
    {
      absl::MutexLock lock(&mu);
      current_io = nullptr;
    }
    if (!result.done) {
      result.error = absl::StrCat("timed out after ",
                                  absl::FormatDuration(options.timeout));
    }
    // `io` is destroyed here with any unfinished operation (and `result` is
    // no longer written: the coroutine frame goes with it).
    return result;
  }

  void Run() {
    while (true) {
      std::string body;
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(
            +[](Impl* impl) ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl->mu) {
              return impl->stopping || !impl->queue.empty();
            },
            this));
        if (stopping) return;
        body = std::move(queue.front());
        queue.pop_front();
      }
      absl::Duration backoff = options.initial_backoff;
      bool delivered = false;
      for (int attempt = 1; attempt <= options.max_attempts; ++attempt) {
        AttemptResult r = Post(body);
        if (r.http_status >= 200 && r.http_status < 300) {
          delivered = true;
          break;
        }
        const std::string why =
            r.http_status != 0 ? absl::StrCat("HTTP ", r.http_status) : r.error;
        log::Warning("alert webhook attempt failed",
                     {{"url", url.ToString()},
                      {"attempt", attempt},
                      {"max_attempts", options.max_attempts},
                      {"error", why}});
        absl::MutexLock lock(&mu);
        ++stats.failed_attempts;
        if (stopping) break;
        if (attempt == options.max_attempts) break;
        const absl::Time until = Clock::Real()->Now() + backoff;
        mu.AwaitWithDeadline(absl::Condition(&stopping), until);
        if (stopping) break;
        backoff *= 2;
      }
      absl::MutexLock lock(&mu);
      if (delivered) {
        ++stats.delivered;
      } else if (stopping) {
        ++stats.dropped;
      } else {
        ++stats.failures;
        log::Error("alert webhook gave up",
                   {{"url", url.ToString()},
                    {"attempts", options.max_attempts}});
      }
    }
  }
};

absl::StatusOr<std::unique_ptr<AlertWebhook>> AlertWebhook::Start(
    Options options) {
  absl::StatusOr<ingest::UpstreamUrl> url =
      ingest::ParseUpstreamUrl(options.url);
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alert webhook URL must be http://host[:port]/path or https://...: ",
        url.status().message()));
  }
  if (options.max_attempts < 1 || options.queue_capacity < 1 ||
      options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "alert webhook: max_attempts and queue_capacity must be at least 1 "
        "and timeout positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->url = *url;
  if (url->tls) {
    impl->ssl_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    impl->ssl_ctx->set_options(ssl::context::default_workarounds |
                               ssl::context::no_sslv2 |
                               ssl::context::no_sslv3 |
                               ssl::context::no_tlsv1 |
                               ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    impl->ssl_ctx->set_default_verify_paths(ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load the system CA store: ", ec.message()));
    }
    if (!options.ca_file.empty()) {
      impl->ssl_ctx->load_verify_file(options.ca_file, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat(
            "alert webhook CA file ", options.ca_file, ": ", ec.message()));
      }
    }
    impl->ssl_ctx->set_verify_mode(ssl::verify_peer);
  }
  impl->options = std::move(options);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    SetCurrentThreadName("chs-alerts");
    raw->Run();
  });
  return std::unique_ptr<AlertWebhook>(new AlertWebhook(std::move(impl)));
}

AlertWebhook::AlertWebhook(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

AlertWebhook::~AlertWebhook() { Stop(); }

void AlertWebhook::Enqueue(std::string json) {
  std::string body = log::Redact(json);
  absl::MutexLock lock(&impl_->mu);
  if (impl_->stopping) {
    ++impl_->stats.dropped;
    return;
  }
  ++impl_->stats.enqueued;
  if (impl_->queue.size() >= impl_->options.queue_capacity) {
    impl_->queue.pop_front();
    ++impl_->stats.dropped;
  }
  impl_->queue.push_back(std::move(body));
}

AlertWebhook::Stats AlertWebhook::GetStats() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->stats;
}

bool AlertWebhook::WaitForSettled(uint64_t n, absl::Duration timeout) const {
  struct Arg {
    Impl* impl;
    uint64_t n;
  } arg{impl_.get(), n};
  absl::MutexLock lock(&impl_->mu);
  return impl_->mu.AwaitWithTimeout(
      absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            const Stats& s = a->impl->stats;
            return s.delivered + s.failures + s.dropped >= a->n;
          },
          &arg),
      timeout);
}

void AlertWebhook::Stop() {
  absl::MutexLock stop_lock(&impl_->stop_mu);
  if (impl_->joined) return;
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stopping = true;
    impl_->stats.dropped += impl_->queue.size();
    impl_->queue.clear();
    if (impl_->current_io != nullptr) impl_->current_io->stop();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->joined = true;
}

}  // namespace chstream::server
