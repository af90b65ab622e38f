#include "ingest/stream_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "ingest/response_reader.h"

// GCC 12 at -O2 reports -Wmismatched-new-delete at the end of every
// coroutine below: it pairs the frame's deallocation with the wrong
// allocation function. Both are Boost.Asio's awaitable_frame_base
// operator new/delete (a false positive, absent at -O0), and with -Werror it
// broke `--config=opt` builds of everything that links the stream client.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace chstream::ingest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// Dead letters keep at most this much of a line (the reason gives the
// original length).
constexpr size_t kMaxDeadLetterBytes = 64 << 10;

using response_reader_internal::ToChrono;

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) |
                       (static_cast<uint8_t>(in[i + 1]) << 8) |
                       static_cast<uint8_t>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.append("==");
  } else if (i + 2 == in.size()) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) |
                       (static_cast<uint8_t>(in[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

const char* OutcomeKindName(Outcome::Kind kind) {
  switch (kind) {
    case Outcome::Kind::kConnected:
      return "connected";
    case Outcome::Kind::kStreamEndedClean:
      return "end_of_stream";
    case Outcome::Kind::kHttpStatus:
      return "http_status";
    case Outcome::Kind::kNetworkError:
      return "network_error";
    case Outcome::Kind::kTlsError:
      return "tls_error";
    case Outcome::Kind::kIdleTimeout:
      return "idle_timeout";
  }
  return "unknown";
}

Outcome MakeOutcome(Outcome::Kind kind, std::string detail) {
  Outcome o;
  o.kind = kind;
  o.detail = std::move(detail);
  return o;
}

}  // namespace

// One connection attempt: resolve, connect, (TLS), request, stream. Runs as
// a coroutine on the io thread; Cancel() closes the socket.
class StreamClient::Session : public std::enable_shared_from_this<Session>,
                              private ResponseVisitor {
 public:
  Session(StreamClient* client, std::string target)
      : client_(client), target_(std::move(target)) {}

  asio::awaitable<Outcome> Run() {
    auto self = shared_from_this();
    const StreamClientOptions& opt = client_->options_;
    beast::error_code ec;
    tcp::resolver resolver(client_->io_);
    // The resolver has no timeout of its own; the system resolver's is
    // bounded and short, and Cancel() also cancels it.
    resolver_ = &resolver;
    auto results = co_await resolver.async_resolve(
        opt.upstream.host, opt.upstream.port,
        asio::redirect_error(asio::use_awaitable, ec));
    resolver_ = nullptr;
    if (cancelled_) co_return Outcome::NetworkError("stopped");
    if (ec) {
      co_return MakeOutcome(Outcome::Kind::kNetworkError,
                            absl::StrCat("DNS lookup of ", opt.upstream.host,
                                         " failed: ", ec.message()));
    }
    tcp_.emplace(client_->io_);
    tcp_->expires_after(ToChrono(opt.connect_timeout));
    co_await tcp_->async_connect(results,
                                 asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return Outcome::NetworkError("stopped");
    if (ec) {
      co_return MakeOutcome(
          Outcome::Kind::kNetworkError,
          absl::StrCat("connect to ", opt.upstream.HostHeader(), " failed: ",
                       ec == beast::error::timeout
                           ? "timed out after " +
                                 absl::FormatDuration(opt.connect_timeout)
                           : ec.message()));
    }
    tcp_->socket().set_option(tcp::no_delay(true), ec);
    if (!opt.upstream.tls) co_return co_await Exchange(*tcp_);

    tls_.emplace(std::move(*tcp_), *client_->ssl_);
    tcp_.reset();
    SSL* ssl = tls_->native_handle();
    const std::string& host = opt.upstream.host;
    beast::error_code addr_ec;
    asio::ip::make_address(host, addr_ec);
    const bool is_ip = !addr_ec;
    if (!is_ip) SSL_set_tlsext_host_name(ssl, host.c_str());
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param,
                                    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    beast::get_lowest_layer(*tls_).expires_after(ToChrono(opt.connect_timeout));
    co_await tls_->async_handshake(
        ssl::stream_base::client,
        asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return Outcome::NetworkError("stopped");
    if (ec) {
      std::string why = ec.message();
      const long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        why = absl::StrCat("certificate verification failed: ",
                           X509_verify_cert_error_string(verify));
      }
      co_return MakeOutcome(
          Outcome::Kind::kTlsError,
          absl::StrCat("TLS handshake with ", opt.upstream.HostHeader(),
                       " failed: ", why));
    }
    co_return co_await Exchange(*tls_);
  }

  void Cancel() {
    cancelled_ = true;
    if (resolver_ != nullptr) resolver_->cancel();
    beast::error_code ec;
    if (tcp_) tcp_->socket().close(ec);
    if (tls_) beast::get_lowest_layer(*tls_).socket().close(ec);
  }

 private:
  template <typename Stream>
  asio::awaitable<Outcome> Exchange(Stream& stream) {
    const StreamClientOptions& opt = client_->options_;
    auto& lowest = beast::get_lowest_layer(stream);
    beast::error_code ec;

    http::request<http::empty_body> req{http::verb::get, target_, 11};
    req.set(http::field::host, opt.upstream.HostHeader());
    req.set(http::field::authorization,
            absl::StrCat("Basic ", Base64(absl::StrCat(opt.key, ":"))));
    req.set(http::field::user_agent, opt.user_agent);
    req.set(http::field::accept_encoding, "identity");
    lowest.expires_after(ToChrono(opt.header_timeout));
    co_await http::async_write(stream, req,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return Outcome::NetworkError("stopped");
    if (ec) {
      co_return MakeOutcome(
          Outcome::Kind::kNetworkError,
          absl::StrCat("sending the request failed: ", ec.message()));
    }

    ResponseReadOptions read_options;
    read_options.header_timeout = opt.header_timeout;
    read_options.idle_timeout = opt.idle_timeout;
    read_options.max_line_bytes = opt.max_line_bytes;
    co_return co_await AsyncReadResponse(stream, read_options, *client_->clock_,
                                         *this, asio::use_awaitable);
  }

  // ResponseVisitor (on the io thread).
  bool Cancelled() const override { return cancelled_; }
  void OnConnected(int http_status) override {
    client_->HandleConnected(http_status);
  }
  void OnBodyBytes(size_t n) override { client_->HandleBytes(n); }
  void OnPartialLine(size_t bytes) override {
    client_->HandlePartialLine(bytes);
  }
  void OnLine(std::string_view line) override { client_->HandleLine(line); }
  void OnHeartbeat() override { client_->HandleHeartbeat(); }
  void OnOversizedLine(std::string_view prefix, size_t total) override {
    client_->HandleOversized(prefix, total);
  }

  StreamClient* const client_;
  const std::string target_;
  tcp::resolver* resolver_ = nullptr;
  std::optional<beast::tcp_stream> tcp_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  bool cancelled_ = false;
};

StreamClient::StreamClient(asio::io_context& io, ssl::context* ssl,
                           StreamClientOptions options, EventSink* sink,
                           Clock* clock, std::function<double()> uniform01)
    : io_(io),
      ssl_(ssl),
      options_(std::move(options)),
      sink_(sink),
      clock_(clock),
      policy_(options_.policy, clock, std::move(uniform01)),
      retry_timer_(io),
      last_accepted_(options_.committed_timepoint) {
  status_.stream = options_.stream;
  status_.last_timepoint = options_.committed_timepoint;
}

StreamClient::~StreamClient() = default;

void StreamClient::Start() {
  asio::post(io_, [this] { Attempt(); });
}

void StreamClient::Stop() {
  asio::post(io_, [this] {
    stopped_ = true;
    retry_timer_.cancel();
    if (session_) session_->Cancel();
    absl::MutexLock lock(&mu_);
    status_.state = StreamState::kStopped;
    status_.connected_since = absl::InfinitePast();
  });
}

StreamStatusSnapshot StreamClient::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

void StreamClient::OnCommitted(const storage::Event* last,
                               uint64_t duplicates) {
  absl::MutexLock lock(&mu_);
  if (last != nullptr &&
      (!status_.last_timepoint || last->timepoint > *status_.last_timepoint)) {
    status_.last_timepoint = last->timepoint;
    status_.last_published_at = last->published_at;
    status_.lag_seconds =
        absl::ToDoubleSeconds(last->received_at - last->published_at);
  }
  status_.duplicates_total += duplicates;
}

std::string StreamClient::RequestTarget() {
  std::string target =
      absl::StrCat(options_.upstream.base_path, "/", options_.stream);
  if (resume_from_head_) return target;
  if (last_accepted_) {
    absl::StrAppend(&target, "?timepoint=", *last_accepted_ + 1);
  } else if (options_.start_timepoint) {
    absl::StrAppend(&target, "?timepoint=", *options_.start_timepoint);
  }
  return target;
}

void StreamClient::ScheduleAttempt(absl::Time at) {
  retry_timer_.expires_after(ToChrono(at - clock_->Now()));
  retry_timer_.async_wait([this](const beast::error_code& ec) {
    if (!ec && !stopped_) Attempt();
  });
}

void StreamClient::Attempt() {
  if (stopped_) return;
  if (!policy_.BeginAttempt()) {
    // The breaker's cool-down is still running, or the policy stopped.
    if (!policy_.stopped()) ScheduleAttempt(policy_.next_attempt_at());
    return;
  }
  if (options_.limiter != nullptr) {
    const absl::Time at = options_.limiter->Reserve();
    if (at > clock_->Now()) {
      {
        absl::MutexLock lock(&mu_);
        status_.state = StreamState::kBackingOff;
        status_.next_retry_at = at;
      }
      log::Warning("holding a reconnect to respect --max_connects_per_minute",
                   {{"stream", options_.stream},
                    {"per_minute", options_.limiter->per_minute()},
                    {"wait", at - clock_->Now()}});
      retry_timer_.expires_after(ToChrono(at - clock_->Now()));
      retry_timer_.async_wait([this](const beast::error_code& ec) {
        if (!ec && !stopped_) Connect();
      });
      return;
    }
  }
  Connect();
}

void StreamClient::Connect() {
  const std::string target = RequestTarget();
  {
    absl::MutexLock lock(&mu_);
    status_.state = StreamState::kConnecting;
    status_.next_retry_at = absl::InfinitePast();
  }
  log::Info("connecting to upstream",
            {{"stream", options_.stream},
             {"url", options_.upstream.ToString()},
             // The stream and resume timepoint, without the base path (it
             // may be a secret, as in a proxy URL).
             {"target", target.substr(options_.upstream.base_path.size())}});
  session_ = std::make_shared<Session>(this, target);
  asio::co_spawn(
      io_, session_->Run(),
      [this, keep = session_](std::exception_ptr error, Outcome outcome) {
        if (error) {
          try {
            std::rethrow_exception(error);
          } catch (const std::exception& e) {
            outcome =
                MakeOutcome(Outcome::Kind::kNetworkError,
                            absl::StrCat("connection failed: ", e.what()));
          }
        }
        OnAttemptDone(outcome);
      });
}

void StreamClient::OnAttemptDone(const Outcome& outcome) {
  session_.reset();
  if (stopped_) {
    absl::MutexLock lock(&mu_);
    status_.state = StreamState::kStopped;
    status_.connected_since = absl::InfinitePast();
    return;
  }
  const Decision d = policy_.OnOutcome(outcome);
  // Taken now, not when the line is logged after the bookkeeping below.
  const absl::Duration retry_in =
      d.stop ? absl::InfiniteDuration() : d.next_attempt_at - clock_->Now();
  if (d.record_gap) {
    storage::Gap gap;
    gap.stream = options_.stream;
    gap.last_timepoint = last_accepted_.value_or(-1);
    gap.recorded_at = clock_->Now();
    AddReaderWait(sink_->AppendGap(gap));
    absl::MutexLock lock(&mu_);
    status_.gaps.push_back({gap.last_timepoint, gap.recorded_at});
  }
  if (d.drop_timepoint) resume_from_head_ = true;
  {
    absl::MutexLock lock(&mu_);
    status_.state = d.state;
    status_.connected_since = absl::InfinitePast();
    status_.last_error = log::Redact(outcome.detail);
    if (outcome.kind == Outcome::Kind::kHttpStatus) {
      status_.last_http_status = outcome.http_status;
      ++status_.http_responses[outcome.http_status];
      ++status_.reconnects_by_cause[absl::StrCat("http_", outcome.http_status)];
    } else {
      ++status_.reconnects_by_cause[OutcomeKindName(outcome.kind)];
    }
    status_.next_retry_at = d.stop ? absl::InfinitePast() : d.next_attempt_at;
    ++status_.reconnects_total;
  }
  const bool bad = outcome.kind != Outcome::Kind::kStreamEndedClean;
  log::Write(bad ? log::Level::kWarning : log::Level::kInfo,
             "upstream connection ended",
             {{"stream", options_.stream},
              {"outcome", OutcomeKindName(outcome.kind)},
              {"http_status", outcome.http_status},
              {"error", outcome.detail},
              {"state", StreamStateName(d.state)},
              {"retry_in", retry_in},
              {"reason", d.reason}});
  if (d.stop) return;
  ScheduleAttempt(d.next_attempt_at);
}

void StreamClient::HandleConnected(int http_status) {
  policy_.OnOutcome(Outcome::Connected());
  absl::MutexLock lock(&mu_);
  status_.state = StreamState::kStreaming;
  status_.connected_since = clock_->Now();
  status_.last_http_status = http_status;
  ++status_.http_responses[http_status];
  status_.last_error.clear();
}

void StreamClient::HandleBytes(size_t n) {
  absl::MutexLock lock(&mu_);
  status_.bytes_total += n;
}

void StreamClient::HandleHeartbeat() {
  absl::MutexLock lock(&mu_);
  ++status_.heartbeats_total;
  status_.last_heartbeat_at = clock_->Now();
}

void StreamClient::HandlePartialLine(size_t bytes) {
  log::Warning("dropped a partial line at the end of the stream",
               {{"stream", options_.stream}, {"bytes", bytes}});
  absl::MutexLock lock(&mu_);
  ++status_.partial_lines_total;
}

void StreamClient::AddReaderWait(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&mu_);
  status_.reader_wait += d;
}

void StreamClient::HandleOversized(std::string_view prefix, size_t total) {
  // The framer kept only the prefix; the reason says so.
  DeadLetter(absl::StrCat("line of ", total, " bytes exceeds --max_line_bytes=",
                          options_.max_line_bytes, " (first ", prefix.size(),
                          " bytes kept)"),
             prefix, prefix.size(), std::nullopt);
}

void StreamClient::DeadLetter(std::string reason, std::string_view line,
                              size_t total_bytes,
                              std::optional<int64_t> timepoint) {
  storage::DeadLetter dl;
  dl.stream = options_.stream;
  dl.received_at = clock_->Now();
  // A dead letter is for a human to look at: the first 64 KiB say what the
  // line was, and a whole 8 MiB line per bad event would fill the disk.
  const std::string_view kept = line.substr(0, kMaxDeadLetterBytes);
  if (kept.size() < total_bytes) {
    absl::StrAppend(&reason, " (line of ", total_bytes, " bytes, first ",
                    kept.size(), " bytes kept)");
  }
  dl.reason = std::move(reason);
  dl.raw = std::string(kept);
  dl.timepoint = timepoint;
  log::Warning("malformed upstream line dead-lettered",
               {{"stream", options_.stream}, {"reason", dl.reason}});
  AddReaderWait(sink_->AppendDeadLetter(std::move(dl)));
  absl::MutexLock lock(&mu_);
  ++status_.malformed_total;
}

std::optional<std::string> StreamClient::CheckTimepoint(
    int64_t timepoint) const {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t jump = options_.max_timepoint_jump;
  // The resume request asks for timepoint + 1, and the jump check adds
  // `jump`: neither may overflow.
  if (timepoint > kMax - jump - 1) {
    return absl::StrCat("event.timepoint ", timepoint,
                        " is too large (would overflow)");
  }
  // The last timepoint accepted (or, before any, the one asked for).
  std::optional<int64_t> last = last_accepted_;
  if (!last && options_.start_timepoint) last = *options_.start_timepoint - 1;
  if (last && timepoint > *last + jump) {
    return absl::StrCat("event.timepoint ", timepoint, " is more than ", jump,
                        " past the stream's last timepoint ", *last);
  }
  return std::nullopt;
}

void StreamClient::HandleLine(std::string_view line) {
  const absl::Time now = clock_->Now();
  auto parsed = parser_.Parse(options_.stream, line, now);
  if (auto* error = std::get_if<ParseError>(&parsed)) {
    DeadLetter(std::move(error->reason), line, line.size(), error->timepoint);
    return;
  }
  storage::Event& event = std::get<storage::Event>(parsed);
  if (last_accepted_ && event.timepoint <= *last_accepted_) {
    // The upstream replays inclusively and re-emits: drop and count.
    absl::MutexLock lock(&mu_);
    ++status_.duplicates_total;
    return;
  }
  // A wild timepoint would become the resume point: every later real event
  // would then be dropped as a duplicate, for good.
  if (std::optional<std::string> wrong = CheckTimepoint(event.timepoint)) {
    DeadLetter(std::move(*wrong), line, line.size(), event.timepoint);
    return;
  }
  last_accepted_ = event.timepoint;
  resume_from_head_ = false;
  {
    // Counted before the hand-off: the writer may commit the event (and a
    // snapshot show it committed) before Append returns, and a snapshot must
    // never show fewer events received than committed.
    absl::MutexLock lock(&mu_);
    ++status_.events_total;
    status_.last_event_at = now;
  }
  AddReaderWait(sink_->Append(std::move(event)));
}

}  // namespace chstream::ingest
