#include "ingest/simulator/simulator.h"

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/thread_name.h"

namespace chstream::ingest::sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;

namespace {

// Share of the companies rate each stream gets (§8 volumes, scaled so that
// companies is the busiest).
constexpr double kRateRatios[kNumStreamKinds] = {
    1.0,   // companies
    0.8,   // filings
    0.4,   // officers
    0.3,   // persons-with-significant-control
    0.1,   // charges
    0.05,  // insolvency-cases
    0.01,  // disqualified-officers
    0.02,  // company-exemptions
    0.1,   // persons-with-significant-control-statements
};

// Bytes of lines gathered into one write.
constexpr size_t kMaxBatchBytes = 256 * 1024;
// Events generated at a time for rate-0 streams.
constexpr int64_t kOnDemandBatch = 64;
constexpr size_t kMaxMalformedKept = 10'000;
constexpr auto kRequestTimeout = std::chrono::seconds(30);
constexpr auto kTlsShutdownTimeout = std::chrono::seconds(2);

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  if (d > absl::Hours(24 * 365)) d = absl::Hours(24 * 365);
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(d));
}

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// splitmix64, for chunk split points.
class SplitRng {
 public:
  explicit SplitRng(uint64_t seed = 0) : state_(seed) {}
  uint64_t Next() { return Mix(state_++); }
  // Uniform-ish in [0, n), n > 0.
  uint64_t Uniform(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >>
                                 64);
  }

 private:
  uint64_t state_;
};

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 416:
      return "Requested Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Time-out";
  }
  return "Error";
}

struct ErrorBody {
  absl::string_view content_type;
  absl::string_view body;
  bool haproxy;
};

ErrorBody ErrorBodyFor(int status) {
  switch (status) {
    case 401:
      return {"application/json",
              R"({"error":"Invalid Authorization","type":"ch:service"})",
              false};
    case 404:
      return {"text/plain; charset=utf-8", "404 page not found\n", false};
    case 429:
      return {"text/html",
              "<html><body><h1>429 Too Many Requests</h1>\nYou have sent too "
              "many requests in a given amount of time.\n</body></html>",
              true};
    case 500:
      return {"text/html",
              "<html><body><h1>500 Internal Server Error</h1>\nAn internal "
              "server error occurred.\n</body></html>",
              true};
    case 502:
      return {"text/html",
              "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an "
              "invalid or incomplete response.\n</body></html>",
              true};
    case 503:
      return {"text/html",
              "<html><body><h1>503 Service Unavailable</h1>\nNo server is "
              "available to handle this request.\n</body></html>",
              true};
    case 504:
      return {"text/html",
              "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't "
              "respond in time.\n</body></html>",
              true};
  }
  return {"text/plain; charset=utf-8", "", false};
}

// Extra, deliberately broken lines (Faults::malformed_every). `real` is the
// last real event sent, whose timepoint the broken line reuses, so a client
// that somehow accepted it would not move its position forward.
std::string MalformedLine(int variant, const Simulator::LogEntry& real) {
  switch (variant % 5) {
    case 0:  // truncated JSON
      return real.line.substr(0, std::max<size_t>(1, real.line.size() / 2));
    case 1: {  // no event.timepoint
      std::string line = real.line;
      const size_t at = line.rfind("\"timepoint\":");
      if (at != std::string::npos) {
        const size_t comma = line.find(',', at);
        line.erase(at, comma - at + 1);
      }
      return line;
    }
    case 2: {  // bad published_at
      std::string line = real.line;
      const std::string key = "\"published_at\":\"";
      const size_t at = line.rfind(key);
      if (at != std::string::npos) {
        const size_t start = at + key.size();
        const size_t end = line.find('"', start);
        line.replace(start, end - start, "not-a-date");
      }
      return line;
    }
    case 3:  // invalid UTF-8 inside a string
      return absl::StrCat(
          R"({"resource_kind":"company-profile","resource_uri":"/company/00000000",)"
          R"("resource_id":"00000000","data":{"company_name":"BAD )",
          std::string("\xC3\x28\xFF", 3), R"( LTD"},"event":{"timepoint":)",
          real.timepoint,
          R"(,"published_at":"2022-08-02T15:21:06","type":"changed"}})");
    default:  // valid JSON, not an event
      return R"(["not","an","event"])";
  }
}

}  // namespace

class Session;

// ---------------------------------------------------------------------------

struct Simulator::Impl {
  using Strand = asio::strand<asio::io_context::executor_type>;

  struct StreamState {
    StreamState(asio::io_context& ioc, StreamKind kind)
        : kind(kind),
          name(StreamName(kind)),
          strand(asio::make_strand(ioc)),
          tick(strand) {}

    const StreamKind kind;
    const std::string name;
    // Guarded by Impl::mu.
    std::unique_ptr<EventGenerator> generator;
    std::deque<LogEntry> log;
    size_t log_bytes = 0;         // sum of log[i].line.size()
    int64_t first_index = 0;      // absolute index of log.front()
    int64_t floor_timepoint = 0;  // lowest replayable timepoint
    int64_t head_timepoint = 0;   // newest event's, 0 before any
    int64_t generated = 0;
    bool producing = true;
    double rate = 0;
    std::optional<Faults> faults;
    int failures_left = 0;
    std::vector<std::weak_ptr<Session>> waiters;
    std::deque<std::string> malformed;
    // Touched only on `strand`.
    Strand strand;
    asio::steady_timer tick;
    absl::Duration tick_interval;
    double carry = 0;
  };

  // The outcome of checking a request.
  struct Admission {
    int status = 200;
    std::string path;
    int stream = -1;
    std::string key;
    int64_t next_index = 0;
    absl::Duration delay = absl::ZeroDuration();
    int retry_after_seconds = -1;
    std::shared_ptr<Session> evict;
    std::string body;         // Faults::fail_body for injected failures
    size_t header_bytes = 0;  // Faults::header_bytes
  };

  explicit Impl(Options o)
      : options(std::move(o)),
        clock(options.clock ? options.clock : Clock::Real()),
        acceptor(asio::make_strand(ioc)),
        work(asio::make_work_guard(ioc)) {}

  absl::Status Init();
  void Run();
  void Stop();
  void DoAccept();
  void ScheduleTick(StreamState& s, bool first);
  void OnTick(StreamState& s);

  StreamState* Find(std::string_view name) const {
    auto kind = StreamKindFromName(name);
    if (!kind || (!name.empty() && name.front() == '/')) return nullptr;
    return streams[static_cast<int>(*kind)].get();
  }
  const Faults& FaultsFor(const StreamState& s) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return s.faults ? *s.faults : global_faults;
  }
  // Generates `count` events; sessions waiting for them are added to *wake.
  void AppendLocked(StreamState& s, int64_t count,
                    std::vector<std::shared_ptr<Session>>* wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Drops the stream's oldest retained event (it must have one).
  void PopOldestLocked(StreamState& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // May the stream still generate on its own (pace or demand)?
  bool UnderCapLocked(const StreamState& s) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return s.producing && (options.max_events_per_stream < 0 ||
                           s.generated < options.max_events_per_stream);
  }
  Admission Admit(uint64_t id, bool is_get, const std::string& target,
                  const std::string& authorization);
  std::vector<std::shared_ptr<Session>> AllSessions();
  void NotifyFaultsChanged();
  static void Wake(const std::vector<std::shared_ptr<Session>>& sessions);

  Options options;
  Clock* clock;
  std::set<std::string> keys;
  uint16_t port = 0;

  // Declared before everything that uses it, so that it is destroyed after.
  asio::io_context ioc;
  std::optional<ssl::context> tls;
  tcp::acceptor acceptor;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::vector<std::thread> threads;
  std::array<std::unique_ptr<StreamState>, kNumStreamKinds> streams;

  mutable absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  Faults global_faults ABSL_GUARDED_BY(mu);
  Stats stats ABSL_GUARDED_BY(mu);
  // Bytes of event lines retained, all streams together.
  size_t retained_bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t next_session_id ABSL_GUARDED_BY(mu) = 1;
  std::map<uint64_t, std::weak_ptr<Session>> sessions ABSL_GUARDED_BY(mu);
  // Streaming sessions per key, oldest first.
  std::map<std::string, std::deque<uint64_t>> streaming_by_key
      ABSL_GUARDED_BY(mu);
  std::map<std::string, std::deque<absl::Time>> connects_by_key
      ABSL_GUARDED_BY(mu);
};

// ---------------------------------------------------------------------------
// One client connection. Everything runs on the connection's strand (the
// socket's executor); shared state is reached through Impl under Impl::mu.

class Session : public std::enable_shared_from_this<Session> {
 public:
  using Impl = Simulator::Impl;

  Session(Impl* impl, uint64_t id, tcp::socket socket)
      : impl_(impl),
        id_(id),
        socket_(std::move(socket)),
        request_timer_(socket_.get_executor()),
        heartbeat_timer_(socket_.get_executor()),
        age_timer_(socket_.get_executor()),
        write_timer_(socket_.get_executor()),
        delay_timer_(socket_.get_executor()),
        shutdown_timer_(socket_.get_executor()) {
    if (impl_->tls) {
      tls_ = std::make_unique<ssl::stream<tcp::socket>>(std::move(socket_),
                                                        *impl_->tls);
    }
  }

  ~Session() { Release(); }

  uint64_t id() const { return id_; }

  void Start() {
    Post([](Session& s) { s.DoStart(); });
  }
  void Wake() {
    Post([](Session& s) { s.Pump(); });
  }
  void FaultsChanged() {
    Post([](Session& s) {
      s.ArmAgeTimer();
      s.Pump();
    });
  }
  // Ends the stream cleanly (evicted by a newer connection of the same key).
  void Evict() {
    Post([](Session& s) {
      s.ending_ = true;
      s.Pump();
    });
  }
  void Shutdown() {
    Post([](Session& s) { s.CloseNow(); });
  }
  void Disconnect(CloseStyle style) {
    Post([style](Session& s) {
      if (!s.streaming_) {
        s.CloseNow();
        return;
      }
      switch (style) {
        case CloseStyle::kClean:
          s.ending_ = true;
          s.Pump();
          break;
        case CloseStyle::kTruncate:
          s.TruncateClose();
          break;
        case CloseStyle::kReset:
          s.ResetClose();
          break;
      }
    });
  }
  // REQUIRES: Impl::mu held (by Impl::AppendLocked).
  void ClearWaitingLocked() { waiting_ = false; }

 private:
  enum class After { kNothing, kGraceful, kReset, kTruncate };

  template <typename F>
  void Post(F f) {
    asio::post(Socket().get_executor(),
               [self = shared_from_this(), f]() { f(*self); });
  }

  tcp::socket& Socket() { return tls_ ? tls_->next_layer() : socket_; }

  template <typename Buffers, typename Handler>
  void AsyncWrite(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
    } else {
      asio::async_write(socket_, buffers, std::forward<Handler>(handler));
    }
  }

  void DoStart() {
    accepted_at_ = impl_->clock->Now();
    request_timer_.expires_after(kRequestTimeout);
    request_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec && !self->request_done_) self->CloseNow();
    });
    if (tls_) {
      tls_->async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](error_code ec) {
                              if (ec) {
                                log::Debug("simulator: TLS handshake failed",
                                           {{"error", ec.message()}});
                                self->CloseNow();
                                return;
                              }
                              self->ReadRequest();
                            });
    } else {
      ReadRequest();
    }
  }

  void ReadRequest() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    auto handler = [self = shared_from_this()](error_code ec, size_t) {
      if (ec) {
        self->CloseNow();
        return;
      }
      self->OnRequest();
    };
    if (tls_) {
      http::async_read(*tls_, buffer_, *parser_, std::move(handler));
    } else {
      http::async_read(socket_, buffer_, *parser_, std::move(handler));
    }
  }

  void OnRequest() {
    if (closed_) return;
    request_done_ = true;
    request_timer_.cancel();
    const auto& request = parser_->get();
    const std::string target(request.target());
    const std::string authorization(request[http::field::authorization]);
    Impl::Admission admission = impl_->Admit(
        id_, request.method() == http::verb::get, target, authorization);
    if (admission.evict) admission.evict->Evict();
    if (admission.status != 200) {
      if (admission.delay > absl::ZeroDuration()) {
        delay_timer_.expires_after(ToChrono(admission.delay));
        delay_timer_.async_wait(
            [self = shared_from_this(), admission](error_code ec) {
              if (ec || self->closed_) return;
              self->WriteError(admission);
            });
      } else {
        WriteError(admission);
      }
      return;
    }
    streaming_ = true;
    stream_ = admission.stream;
    key_ = admission.key;
    next_index_ = admission.next_index;
    header_bytes_ = admission.header_bytes;
    {
      absl::MutexLock lock(&impl_->mu);
      const Faults& faults = impl_->FaultsFor(*impl_->streams[stream_]);
      split_seed_ = faults.split_random;
      chunk_extension_bytes_ = faults.chunk_extension_bytes;
    }
    split_rng_ = SplitRng(Mix(split_seed_ ^ Mix(id_)));
    ArmHeartbeat(/*first=*/true);
    ArmAgeTimer();
    ReadUntilClosed();
    Pump();
  }

  void WriteError(const Impl::Admission& admission) {
    ErrorBody body = ErrorBodyFor(admission.status);
    if (!admission.body.empty()) body.body = admission.body;
    wire_ = absl::StrCat("HTTP/1.1 ", admission.status, " ",
                         ReasonPhrase(admission.status), "\r\n");
    if (body.haproxy) absl::StrAppend(&wire_, "Cache-Control: no-cache\r\n");
    absl::StrAppend(&wire_, "Connection: close\r\n",
                    "Content-Length: ", body.body.size(), "\r\n");
    if (!body.body.empty()) {
      absl::StrAppend(&wire_, "Content-Type: ", body.content_type, "\r\n");
    }
    absl::StrAppend(&wire_, "Date: ", HttpDate(), "\r\n");
    AppendPadding(admission.header_bytes);
    if (admission.retry_after_seconds >= 0) {
      absl::StrAppend(&wire_, "Retry-After: ", admission.retry_after_seconds,
                      "\r\n");
    }
    absl::StrAppend(&wire_, "\r\n", body.body);
    writing_ = true;
    AsyncWrite(asio::buffer(wire_),
               [self = shared_from_this()](error_code ec, size_t) {
                 self->writing_ = false;
                 if (ec) {
                   self->CloseNow();
                   return;
                 }
                 self->GracefulClose();
               });
  }

  std::string HttpDate() const {
    return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", impl_->clock->Now(),
                            absl::UTCTimeZone());
  }

  // Keeps a read pending so that a client's disconnect is noticed at once
  // (and its connection slot freed) rather than at the next write.
  void ReadUntilClosed() {
    if (closed_ || shutting_down_) return;
    auto handler = [self = shared_from_this()](error_code ec, size_t) {
      self->read_pending_ = false;
      if (self->closed_) return;
      if (self->shutting_down_) {
        self->StartTlsShutdown();
        return;
      }
      if (ec) {
        self->CloseNow();
        return;
      }
      self->ReadUntilClosed();
    };
    read_pending_ = true;
    if (tls_) {
      tls_->async_read_some(asio::buffer(discard_), std::move(handler));
    } else {
      socket_.async_read_some(asio::buffer(discard_), std::move(handler));
    }
  }

  void ArmHeartbeat(bool first) {
    const auto interval = ToChrono(impl_->options.heartbeat_interval);
    if (first) {
      heartbeat_timer_.expires_after(interval);
    } else {
      heartbeat_timer_.expires_at(heartbeat_timer_.expiry() + interval);
    }
    heartbeat_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->closed_) return;
      bool die;
      {
        absl::MutexLock lock(&self->impl_->mu);
        die = self->impl_->FaultsFor(*self->impl_->streams[self->stream_])
                  .heartbeats_die;
      }
      if (!die) self->heartbeat_pending_ = true;
      self->ArmHeartbeat(/*first=*/false);
      self->Pump();
    });
  }

  void ArmAgeTimer() {
    if (closed_ || !streaming_) return;
    absl::Duration age;
    {
      absl::MutexLock lock(&impl_->mu);
      age = impl_->FaultsFor(*impl_->streams[stream_]).max_connection_age;
    }
    const absl::Duration left = accepted_at_ + age - impl_->clock->Now();
    age_timer_.expires_after(ToChrono(left));
    age_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->closed_) return;
      self->ending_ = true;
      self->Pump();
    });
  }

  // Writes whatever is due: a heartbeat, events, the end of the stream.
  void Pump() {
    if (closed_ || !streaming_ || writing_ || shutting_down_) return;
    payload_.clear();
    line_ends_.clear();
    int64_t events = 0, malformed = 0, heartbeats = 0;
    bool end_clean = ending_;
    bool close_after = false;
    std::string partial;
    Faults faults;
    std::vector<std::shared_ptr<Session>> wake;
    {
      absl::MutexLock lock(&impl_->mu);
      Impl::StreamState& s = *impl_->streams[stream_];
      faults = impl_->FaultsFor(s);
      if (heartbeat_pending_) {
        heartbeat_pending_ = false;
        payload_.push_back('\n');
        line_ends_.push_back(payload_.size());
        ++heartbeats;
      }
      if (!end_clean && !faults.stall) {
        if (next_index_ < s.first_index) {
          // Fell out of the retention window while reading slowly.
          end_clean = true;
        } else {
          const int64_t allowed = faults.close_after_events > 0
                                      ? faults.close_after_events - events_sent_
                                      : std::numeric_limits<int64_t>::max();
          auto available = [&] {
            return s.first_index + static_cast<int64_t>(s.log.size()) -
                   next_index_;
          };
          if (available() == 0 && allowed > 0 && s.rate == 0 &&
              impl_->UnderCapLocked(s)) {
            int64_t count = kOnDemandBatch;
            if (impl_->options.retention_events > 0) {
              // Never generate more than the window keeps.
              count = std::min(count, impl_->options.retention_events);
            }
            if (impl_->options.max_events_per_stream >= 0) {
              count = std::min(
                  count, impl_->options.max_events_per_stream - s.generated);
            }
            impl_->AppendLocked(s, count, &wake);
          }
          while (events < allowed && available() > 0 &&
                 payload_.size() < kMaxBatchBytes) {
            const Simulator::LogEntry& entry =
                s.log[static_cast<size_t>(next_index_ - s.first_index)];
            payload_.append(entry.line);
            payload_.push_back('\n');
            line_ends_.push_back(payload_.size());
            ++next_index_;
            ++events;
            if (faults.malformed_every > 0 &&
                ++since_malformed_ >= faults.malformed_every) {
              since_malformed_ = 0;
              std::string bad = faults.malformed_line.empty()
                                    ? MalformedLine(malformed_variant_++, entry)
                                    : faults.malformed_line;
              payload_.append(bad);
              payload_.push_back('\n');
              line_ends_.push_back(payload_.size());
              if (s.malformed.size() < kMaxMalformedKept) {
                s.malformed.push_back(std::move(bad));
              }
              ++malformed;
            }
          }
          events_sent_ += events;
          if (faults.close_after_events > 0 &&
              events_sent_ >= faults.close_after_events) {
            close_after = true;
            if (faults.close_mid_line && available() > 0) {
              const std::string& next =
                  s.log[static_cast<size_t>(next_index_ - s.first_index)].line;
              partial = next.substr(0, std::max<size_t>(1, next.size() / 2));
            }
          } else if (events == 0 && !waiting_) {
            // Woken by Impl::AppendLocked when the stream grows.
            waiting_ = true;
            if (s.waiters.size() >= 64) {
              std::erase_if(s.waiters,
                            [](const auto& w) { return w.expired(); });
            }
            s.waiters.push_back(weak_from_this());
          }
        }
      }
    }
    Impl::Wake(wake);

    chunks_.clear();
    AppendChunks(faults);
    if (!partial.empty()) AppendChunk(partial);
    After after = After::kNothing;
    if (end_clean) {
      chunks_.append("0\r\n\r\n");
      after = After::kGraceful;
    } else if (close_after) {
      switch (faults.close_style) {
        case CloseStyle::kClean:
          chunks_.append("0\r\n\r\n");
          after = After::kGraceful;
          break;
        case CloseStyle::kTruncate:
          after = After::kTruncate;
          break;
        case CloseStyle::kReset:
          after = After::kReset;
          break;
      }
    }
    wire_.clear();
    if (!headers_sent_ &&
        (!chunks_.empty() || !impl_->options.headers_on_first_byte)) {
      wire_ = absl::StrCat(
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
          "Date: ",
          HttpDate(), "\r\nTransfer-Encoding: chunked\r\n");
      AppendPadding(header_bytes_);
      wire_.append("\r\n");
      headers_sent_ = true;
    }
    wire_.append(chunks_);
    if (wire_.empty()) {
      if (after != After::kNothing) Finish(after);
      return;
    }
    pending_events_ = events;
    pending_malformed_ = malformed;
    pending_heartbeats_ = heartbeats;
    after_write_ = after;
    writing_ = true;
    const uint64_t seq = ++write_seq_;
    if (faults.slow_reader_timeout > absl::ZeroDuration()) {
      write_timer_.expires_after(ToChrono(faults.slow_reader_timeout));
      write_timer_.async_wait([self = shared_from_this(), seq](error_code ec) {
        if (ec || self->closed_ || !self->writing_ || self->write_seq_ != seq) {
          return;
        }
        {
          absl::MutexLock lock(&self->impl_->mu);
          ++self->impl_->stats.slow_reader_disconnects;
        }
        log::Debug("simulator: slow reader disconnected",
                   {{"connection", self->id_}});
        self->ResetClose();
      });
    }
    AsyncWrite(asio::buffer(wire_),
               [self = shared_from_this()](error_code ec, size_t) {
                 self->OnWrite(ec);
               });
  }

  void OnWrite(error_code ec) {
    writing_ = false;
    write_timer_.cancel();
    if (closed_) return;
    if (ec) {
      CloseNow();
      return;
    }
    {
      absl::MutexLock lock(&impl_->mu);
      const std::string& name = impl_->streams[stream_]->name;
      Stats& stats = impl_->stats;
      if (pending_events_) stats.events_sent[name] += pending_events_;
      if (pending_malformed_) stats.malformed_sent[name] += pending_malformed_;
      if (pending_heartbeats_) {
        stats.heartbeats_sent[name] += pending_heartbeats_;
      }
    }
    if (after_write_ != After::kNothing) {
      Finish(after_write_);
      return;
    }
    Pump();
  }

  // Cuts payload_ (complete lines ending at line_ends_) into HTTP chunks.
  void AppendChunks(const Faults& faults) {
    if (payload_.empty()) return;
    cuts_.clear();
    size_t start = 0;
    for (size_t end : line_ends_) {
      const size_t length = end - start;
      if (split_seed_ != 0 && faults.split_random != 0 && length > 2) {
        const int cuts = 1 + static_cast<int>(split_rng_.Uniform(3));
        for (int i = 0; i < cuts; ++i) {
          cuts_.push_back(start + 1 + split_rng_.Uniform(length - 1));
        }
        // One cut between a UTF-8 lead byte and a continuation byte.
        size_t continuation = 0;
        for (size_t i = start + 1; i < end; ++i) {
          if ((static_cast<unsigned char>(payload_[i]) & 0xC0) == 0x80) {
            ++continuation;
          }
        }
        if (continuation > 0) {
          size_t pick = split_rng_.Uniform(continuation);
          for (size_t i = start + 1; i < end; ++i) {
            if ((static_cast<unsigned char>(payload_[i]) & 0xC0) == 0x80 &&
                pick-- == 0) {
              cuts_.push_back(i);
              break;
            }
          }
        }
      }
      if (faults.lone_newline_chunks && length > 1) cuts_.push_back(end - 1);
      if (!faults.coalesce) cuts_.push_back(end);
      start = end;
    }
    cuts_.push_back(payload_.size());
    std::sort(cuts_.begin(), cuts_.end());
    size_t from = 0;
    for (size_t cut : cuts_) {
      if (cut <= from) continue;
      AppendChunk(std::string_view(payload_).substr(from, cut - from));
      from = cut;
    }
  }

  // Faults::header_bytes: an "X-Padding: vvv..." header line in wire_.
  void AppendPadding(size_t bytes) {
    if (bytes == 0) return;
    wire_.append("X-Padding: ");
    wire_.append(bytes, 'v');
    wire_.append("\r\n");
  }

  void AppendChunk(std::string_view data) {
    absl::StrAppend(&chunks_, absl::Hex(data.size()));
    if (chunk_extension_bytes_ > 0) {  // Faults::chunk_extension_bytes
      chunks_.append(";x=");
      chunks_.append(chunk_extension_bytes_, 'v');
    }
    chunks_.append("\r\n");
    chunks_.append(data);
    chunks_.append("\r\n");
  }

  void Finish(After after) {
    switch (after) {
      case After::kGraceful:
        GracefulClose();
        break;
      case After::kReset:
        ResetClose();
        break;
      case After::kTruncate:
        TruncateClose();
        break;
      case After::kNothing:
        break;
    }
  }

  // FIN after everything written (TLS: close_notify first).
  void GracefulClose() {
    if (closed_ || shutting_down_) return;
    Release();
    if (!tls_) {
      error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      CloseNow();
      return;
    }
    shutting_down_ = true;
    shutdown_timer_.expires_after(kTlsShutdownTimeout);
    shutdown_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->CloseNow();
    });
    if (read_pending_) {
      // The pending read must finish before the TLS shutdown may read.
      error_code ignored;
      Socket().cancel(ignored);
    } else {
      StartTlsShutdown();
    }
  }

  void StartTlsShutdown() {
    if (closed_) return;
    tls_->async_shutdown(
        [self = shared_from_this()](error_code) { self->CloseNow(); });
  }

  void ResetClose() {
    if (closed_) return;
    error_code ignored;
    Socket().set_option(asio::socket_base::linger(true, 0), ignored);
    CloseNow();
  }

  void TruncateClose() {
    if (closed_) return;
    error_code ignored;
    Socket().shutdown(tcp::socket::shutdown_both, ignored);
    CloseNow();
  }

  void CloseNow() {
    if (closed_) return;
    closed_ = true;
    request_timer_.cancel();
    heartbeat_timer_.cancel();
    age_timer_.cancel();
    write_timer_.cancel();
    delay_timer_.cancel();
    shutdown_timer_.cancel();
    error_code ignored;
    Socket().close(ignored);
    Release();
  }

  // Gives back the key's connection slot and leaves the registry.
  void Release() {
    if (released_) return;
    released_ = true;
    absl::MutexLock lock(&impl_->mu);
    impl_->sessions.erase(id_);
    if (streaming_) {
      auto it = impl_->streaming_by_key.find(key_);
      if (it != impl_->streaming_by_key.end()) {
        auto& ids = it->second;
        auto pos = std::find(ids.begin(), ids.end(), id_);
        if (pos != ids.end()) {
          ids.erase(pos);
          if (--impl_->stats.connections_by_key[key_] == 0) {
            impl_->stats.connections_by_key.erase(key_);
          }
        }
      }
    }
  }

  Impl* const impl_;
  const uint64_t id_;
  tcp::socket socket_;  // moved into tls_ for HTTPS
  std::unique_ptr<ssl::stream<tcp::socket>> tls_;
  asio::steady_timer request_timer_;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer age_timer_;
  asio::steady_timer write_timer_;
  asio::steady_timer delay_timer_;
  asio::steady_timer shutdown_timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::array<char, 512> discard_;

  absl::Time accepted_at_;
  bool request_done_ = false;
  bool streaming_ = false;
  bool headers_sent_ = false;
  bool writing_ = false;
  bool read_pending_ = false;
  bool heartbeat_pending_ = false;
  bool ending_ = false;
  bool shutting_down_ = false;
  bool closed_ = false;
  bool released_ = false;
  bool waiting_ = false;  // in the stream's waiters; guarded by Impl::mu
  int stream_ = -1;
  std::string key_;
  int64_t next_index_ = 0;
  int64_t events_sent_ = 0;  // real events queued on this connection
  int since_malformed_ = 0;
  int malformed_variant_ = 0;
  uint64_t split_seed_ = 0;
  size_t chunk_extension_bytes_ = 0;
  size_t header_bytes_ = 0;
  SplitRng split_rng_;
  uint64_t write_seq_ = 0;

  // The write in flight.
  std::string payload_;
  std::vector<size_t> line_ends_;
  std::vector<size_t> cuts_;
  std::string chunks_;
  std::string wire_;
  int64_t pending_events_ = 0;
  int64_t pending_malformed_ = 0;
  int64_t pending_heartbeats_ = 0;
  After after_write_ = After::kNothing;
};

// ---------------------------------------------------------------------------

void Simulator::Impl::Wake(
    const std::vector<std::shared_ptr<Session>>& sessions) {
  for (const auto& session : sessions) session->Wake();
}

void Simulator::Impl::AppendLocked(
    StreamState& s, int64_t count,
    std::vector<std::shared_ptr<Session>>* wake) {
  if (count <= 0) return;
  const absl::Time now = clock->Now();
  for (int64_t i = 0; i < count; ++i) {
    LogEntry entry;
    entry.timepoint = s.generator->Next(now, &entry.line);
    s.head_timepoint = entry.timepoint;
    s.log_bytes += entry.line.size();
    retained_bytes += entry.line.size();
    s.log.push_back(std::move(entry));
  }
  s.generated += count;
  stats.events_generated[s.name] += count;
  if (options.retention_events >= 0) {
    while (static_cast<int64_t>(s.log.size()) > options.retention_events) {
      PopOldestLocked(s);
    }
  }
  if (options.retention_bytes >= 0) {
    // Over the shared budget: the stream holding the most gives way, so
    // that the streams end up with equal shares (a slow stream keeps a
    // longer history) and a stream that starts late still keeps its own.
    while (retained_bytes > static_cast<size_t>(options.retention_bytes)) {
      StreamState* largest = nullptr;
      for (const auto& candidate : streams) {
        if (candidate != nullptr && candidate->log.size() > 1 &&
            (largest == nullptr || candidate->log_bytes > largest->log_bytes)) {
          largest = candidate.get();
        }
      }
      if (largest == nullptr) break;  // every stream is down to its newest
      PopOldestLocked(*largest);
    }
  }
  for (const auto& waiter : s.waiters) {
    if (auto session = waiter.lock()) {
      session->ClearWaitingLocked();
      wake->push_back(std::move(session));
    }
  }
  s.waiters.clear();
}

void Simulator::Impl::PopOldestLocked(StreamState& s) {
  const size_t bytes = s.log.front().line.size();
  s.log_bytes -= bytes;
  retained_bytes -= bytes;
  s.floor_timepoint = s.log.front().timepoint + 1;
  s.log.pop_front();
  ++s.first_index;
}

absl::Status Simulator::Impl::Init() {
  for (const std::string& key : options.keys) {
    if (key.empty()) return absl::InvalidArgumentError("empty stream key");
    keys.insert(key);
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError("at least one stream key is required");
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError("threads must be at least 1");
  }
  if (options.heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("heartbeat_interval must be positive");
  }
  if (options.invalid_timepoint_status != 400 &&
      options.invalid_timepoint_status != 416) {
    return absl::InvalidArgumentError(
        "invalid_timepoint_status must be 400 or 416");
  }
  if (options.retention_events == 0 || options.retention_events < -1) {
    return absl::InvalidArgumentError(
        "retention_events must be -1 (all) or positive");
  }
  if (options.retention_bytes == 0 || options.retention_bytes < -1) {
    return absl::InvalidArgumentError(
        "retention_bytes must be -1 (no cap) or positive");
  }
  if (options.max_connections_per_key < 1) {
    return absl::InvalidArgumentError(
        "max_connections_per_key must be at least 1");
  }
  if (options.companies_rate < 0 || !std::isfinite(options.companies_rate)) {
    return absl::InvalidArgumentError("companies_rate must be >= 0");
  }
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert_pem and tls_key_pem must be given together");
  }
  for (const auto& [name, rate] : options.stream_rates) {
    if (!StreamKindFromName(name) || absl::StartsWith(name, "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown stream in stream_rates: ", name));
    }
    if (rate < 0 || !std::isfinite(rate)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rate for ", name, " must be >= 0"));
    }
  }
  std::set<int> producing;
  for (const std::string& name : options.streams) {
    auto kind = StreamKindFromName(name);
    if (!kind) {
      return absl::InvalidArgumentError(absl::StrCat("unknown stream: ", name));
    }
    producing.insert(static_cast<int>(*kind));
  }
  auto check_faults = [](const Faults& f) -> absl::Status {
    static const std::set<int> kStatuses = {401, 429, 500, 502, 503, 504};
    if (f.fail_first_attempts > 0 && !kStatuses.count(f.fail_status)) {
      return absl::InvalidArgumentError(
          "fail_status must be one of 401, 429, 500, 502, 503, 504");
    }
    return absl::OkStatus();
  };
  CHS_RETURN_IF_ERROR(check_faults(options.faults));

  if (!options.tls_cert_pem.empty()) {
    tls.emplace(ssl::context::tls_server);
    error_code ec;
    tls->set_options(ssl::context::default_workarounds |
                         ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                     ec);
    tls->use_certificate_chain(asio::buffer(options.tls_cert_pem), ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad TLS certificate: ", ec.message()));
    }
    tls->use_private_key(asio::buffer(options.tls_key_pem), ssl::context::pem,
                         ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad TLS private key: ", ec.message()));
    }
  }

  {
    absl::MutexLock lock(&mu);
    global_faults = options.faults;
    for (int i = 0; i < kNumStreamKinds; ++i) {
      const StreamKind kind = static_cast<StreamKind>(i);
      auto s = std::make_unique<StreamState>(ioc, kind);
      GeneratorOptions generator_options = options.generator;
      if (auto first =
              options.first_timepoints.find(std::string(StreamName(kind)));
          first != options.first_timepoints.end()) {
        generator_options.first_timepoint = first->second;
      }
      s->generator = std::make_unique<EventGenerator>(kind, options.seed,
                                                      generator_options);
      s->floor_timepoint = s->generator->last_timepoint() + 1;
      s->producing = producing.empty() || producing.count(i) > 0;
      auto rate = options.stream_rates.find(s->name);
      s->rate = rate != options.stream_rates.end()
                    ? rate->second
                    : options.companies_rate * kRateRatios[i];
      s->failures_left = options.faults.fail_first_attempts;
      streams[i] = std::move(s);
    }
    std::vector<std::shared_ptr<Session>> none;
    for (auto& s : streams) {
      if (!s->producing) continue;
      int64_t count = options.initial_events_per_stream;
      if (options.max_events_per_stream >= 0) {
        count = std::min(count, options.max_events_per_stream);
      }
      AppendLocked(*s, count, &none);
    }
  }

  error_code ec;
  const asio::ip::address address = asio::ip::make_address(options.address, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad address '", options.address, "': ", ec.message()));
  }
  const tcp::endpoint endpoint(address, options.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.address, ":", options.port,
                     ": ", ec.message()));
  }
  port = acceptor.local_endpoint(ec).port();
  return absl::OkStatus();
}

void Simulator::Impl::Run() {
  for (auto& s : streams) {
    if (!s->producing || s->rate <= 0) continue;
    s->tick_interval = std::clamp(absl::Seconds(1.0 / s->rate),
                                  absl::Milliseconds(10), absl::Seconds(1));
    StreamState* state = s.get();
    asio::post(s->strand, [this, state] { ScheduleTick(*state, true); });
  }
  asio::post(acceptor.get_executor(), [this] { DoAccept(); });
  for (int i = 0; i < options.threads; ++i) {
    threads.emplace_back([this] {
      SetCurrentThreadName("chs-simulator");
      ioc.run();
    });
  }
}

void Simulator::Impl::ScheduleTick(StreamState& s, bool first) {
  if (first) {
    s.tick.expires_after(ToChrono(s.tick_interval));
  } else {
    // Drift-free: the next tick is due one interval after the last one.
    s.tick.expires_at(s.tick.expiry() + ToChrono(s.tick_interval));
  }
  s.tick.async_wait([this, state = &s](error_code ec) {
    if (!ec) OnTick(*state);
  });
}

void Simulator::Impl::OnTick(StreamState& s) {
  std::vector<std::shared_ptr<Session>> wake;
  bool more;
  {
    absl::MutexLock lock(&mu);
    if (stopping) return;
    s.carry += s.rate * absl::ToDoubleSeconds(s.tick_interval);
    int64_t count = static_cast<int64_t>(s.carry);
    s.carry -= static_cast<double>(count);
    if (options.max_events_per_stream >= 0) {
      count = std::min(count, options.max_events_per_stream - s.generated);
    }
    if (UnderCapLocked(s)) AppendLocked(s, count, &wake);
    more = UnderCapLocked(s);
  }
  Wake(wake);
  if (more) ScheduleTick(s, false);
}

void Simulator::Impl::DoAccept() {
  acceptor.async_accept(
      asio::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
        if (ec) {
          if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
            return;
          }
          log::Warning("simulator: accept failed", {{"error", ec.message()}});
          DoAccept();
          return;
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        std::shared_ptr<Session> session;
        {
          absl::MutexLock lock(&mu);
          if (stopping) return;
          const uint64_t id = next_session_id++;
          ++stats.connections_accepted;
          session = std::make_shared<Session>(this, id, std::move(socket));
          sessions[id] = session;
        }
        session->Start();
        DoAccept();
      });
}

Simulator::Impl::Admission Simulator::Impl::Admit(
    uint64_t id, bool is_get, const std::string& target,
    const std::string& authorization) {
  Admission a;
  const size_t question = target.find('?');
  a.path = target.substr(0, question);
  const absl::string_view query =
      question == std::string::npos
          ? absl::string_view()
          : absl::string_view(target).substr(question + 1);
  absl::MutexLock lock(&mu);
  auto finish = [&](int status) {
    a.status = status;
    ++stats.requests[{a.path, status}];
    log::Debug("simulator: request",
               {{"connection", id}, {"path", a.path}, {"status", status}});
    return a;
  };

  StreamState* s = a.path.empty() || a.path.front() != '/'
                       ? nullptr
                       : Find(std::string_view(a.path).substr(1));
  if (!is_get || s == nullptr) return finish(404);
  a.stream = static_cast<int>(s->kind);
  const Faults& faults = FaultsFor(*s);

  a.header_bytes = faults.header_bytes;
  if (s->failures_left > 0) {
    --s->failures_left;
    a.delay = faults.fail_delay;
    a.body = faults.fail_body;
    if (faults.fail_status == 429) {
      a.retry_after_seconds = faults.retry_after_seconds;
    }
    return finish(faults.fail_status);
  }

  // Basic auth: base64("key:password"); the password is ignored.
  std::string key;
  {
    absl::string_view value = absl::StripAsciiWhitespace(authorization);
    std::string decoded;
    if (value.size() > 6 &&
        absl::EqualsIgnoreCase(value.substr(0, 6), "basic ") &&
        absl::Base64Unescape(absl::StripAsciiWhitespace(value.substr(6)),
                             &decoded)) {
      const size_t colon = decoded.find(':');
      if (colon != std::string::npos) key = decoded.substr(0, colon);
    }
  }
  if (key.empty() || !keys.count(key)) return finish(401);
  a.key = key;

  if (options.max_connects_per_minute > 0) {
    const absl::Time now = clock->Now();
    auto& times = connects_by_key[key];
    while (!times.empty() && times.front() <= now - absl::Minutes(1)) {
      times.pop_front();
    }
    times.push_back(now);
    if (static_cast<int>(times.size()) > options.max_connects_per_minute) {
      a.retry_after_seconds = faults.retry_after_seconds;
      return finish(429);
    }
  }

  // ?timepoint=N
  std::optional<absl::string_view> timepoint;
  for (absl::string_view param : absl::StrSplit(query, '&')) {
    if (absl::StartsWith(param, "timepoint=")) {
      timepoint = param.substr(10);
      break;
    }
    if (param == "timepoint") {
      timepoint = absl::string_view();
      break;
    }
  }
  const int64_t end_index =
      s->first_index + static_cast<int64_t>(s->log.size());
  if (!timepoint) {
    a.next_index = end_index;  // live tail
  } else {
    absl::string_view text = *timepoint;
    bool digits = !text.empty();
    for (char c : text) digits = digits && c >= '0' && c <= '9';
    if (!digits) return finish(options.invalid_timepoint_status);
    int64_t n = 0;
    bool overflow = false;
    for (char c : text) {
      if (n > (std::numeric_limits<int64_t>::max() - (c - '0')) / 10) {
        overflow = true;
        break;
      }
      n = n * 10 + (c - '0');
    }
    const int64_t head = s->generator->last_timepoint();
    if (overflow || n > head + 1) {
      if (!options.future_timepoint_tails) return finish(416);
      a.next_index = end_index;
    } else if (n < s->floor_timepoint) {
      return finish(416);
    } else {
      auto it = std::lower_bound(
          s->log.begin(), s->log.end(), n,
          [](const LogEntry& e, int64_t tp) { return e.timepoint < tp; });
      a.next_index = s->first_index + (it - s->log.begin());
    }
  }

  auto& open = streaming_by_key[key];
  if (static_cast<int>(open.size()) >= options.max_connections_per_key) {
    if (options.cap_mode == CapMode::kRejectWith429) {
      a.retry_after_seconds = faults.retry_after_seconds;
      return finish(429);
    }
    // Evict the oldest: it leaves the count now, and ends on its own strand.
    const uint64_t oldest = open.front();
    open.pop_front();
    if (--stats.connections_by_key[key] == 0) {
      stats.connections_by_key.erase(key);
    }
    ++stats.evictions;
    auto victim = sessions.find(oldest);
    if (victim != sessions.end()) a.evict = victim->second.lock();
  }
  open.push_back(id);
  ++stats.connections_by_key[key];
  return finish(200);
}

std::vector<std::shared_ptr<Session>> Simulator::Impl::AllSessions() {
  std::vector<std::shared_ptr<Session>> all;
  absl::MutexLock lock(&mu);
  for (const auto& [id, weak] : sessions) {
    if (auto session = weak.lock()) all.push_back(std::move(session));
  }
  return all;
}

void Simulator::Impl::NotifyFaultsChanged() {
  for (const auto& session : AllSessions()) session->FaultsChanged();
}

void Simulator::Impl::Stop() {
  std::vector<std::shared_ptr<Session>> all;
  {
    absl::MutexLock lock(&mu);
    if (stopping) return;
    stopping = true;
    for (const auto& [id, weak] : sessions) {
      if (auto session = weak.lock()) all.push_back(std::move(session));
    }
  }
  asio::post(acceptor.get_executor(), [this] {
    error_code ignored;
    acceptor.close(ignored);
  });
  for (auto& s : streams) {
    StreamState* state = s.get();
    asio::post(state->strand, [state] { state->tick.cancel(); });
  }
  for (const auto& session : all) session->Shutdown();
  all.clear();
  work.reset();
  for (std::thread& thread : threads) thread.join();
  threads.clear();
  absl::MutexLock lock(&mu);
  stopped = true;
}

// ---------------------------------------------------------------------------

int64_t Stats::Requests(std::string_view path, int status) const {
  auto it = requests.find({std::string(path), status});
  return it == requests.end() ? 0 : it->second;
}

int64_t Stats::RequestsWithStatus(int status) const {
  int64_t total = 0;
  for (const auto& [key, count] : requests) {
    if (key.second == status) total += count;
  }
  return total;
}

int64_t Stats::OpenConnections() const {
  int64_t total = 0;
  for (const auto& [key, count] : connections_by_key) total += count;
  return total;
}

Simulator::Simulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Simulator::~Simulator() { Stop(); }

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Start(Options options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  CHS_RETURN_IF_ERROR(impl->Init());
  impl->Run();
  log::Info("simulator listening",
            {{"url", absl::StrCat(impl->tls ? "https" : "http", "://",
                                  impl->options.address, ":", impl->port)}});
  return std::unique_ptr<Simulator>(new Simulator(std::move(impl)));
}

uint16_t Simulator::port() const { return impl_->port; }

std::string Simulator::url() const {
  std::string host = impl_->options.address;
  if (absl::StrContains(host, ':')) host = absl::StrCat("[", host, "]");
  return absl::StrCat(impl_->tls ? "https" : "http", "://", host, ":",
                      impl_->port);
}

void Simulator::SetFaults(const Faults& faults) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->global_faults = faults;
    for (auto& s : impl_->streams) {
      if (!s->faults) s->failures_left = faults.fail_first_attempts;
    }
  }
  impl_->NotifyFaultsChanged();
}

void Simulator::SetFaults(std::string_view stream, const Faults& faults) {
  {
    absl::MutexLock lock(&impl_->mu);
    Impl::StreamState* s = impl_->Find(stream);
    if (s == nullptr) return;
    s->faults = faults;
    s->failures_left = faults.fail_first_attempts;
  }
  impl_->NotifyFaultsChanged();
}

void Simulator::ClearStreamFaults(std::string_view stream) {
  {
    absl::MutexLock lock(&impl_->mu);
    Impl::StreamState* s = impl_->Find(stream);
    if (s == nullptr) return;
    s->faults.reset();
    s->failures_left = 0;
  }
  impl_->NotifyFaultsChanged();
}

std::vector<Simulator::LogEntry> Simulator::Log(std::string_view stream) const {
  absl::MutexLock lock(&impl_->mu);
  const Impl::StreamState* s = impl_->Find(stream);
  if (s == nullptr) return {};
  return std::vector<LogEntry>(s->log.begin(), s->log.end());
}

int64_t Simulator::HeadTimepoint(std::string_view stream) const {
  absl::MutexLock lock(&impl_->mu);
  const Impl::StreamState* s = impl_->Find(stream);
  return s == nullptr ? 0 : s->head_timepoint;
}

absl::StatusOr<int64_t> Simulator::GenerateEvents(std::string_view stream,
                                                  int64_t count) {
  std::vector<std::shared_ptr<Session>> wake;
  int64_t head;
  {
    absl::MutexLock lock(&impl_->mu);
    Impl::StreamState* s = impl_->Find(stream);
    if (s == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("unknown stream: ", std::string(stream)));
    }
    if (count < 0) return absl::InvalidArgumentError("negative count");
    impl_->AppendLocked(*s, count, &wake);
    head = s->head_timepoint;
  }
  Impl::Wake(wake);
  return head;
}

absl::Status Simulator::SkipTimepoints(std::string_view stream, int64_t count) {
  absl::MutexLock lock(&impl_->mu);
  Impl::StreamState* s = impl_->Find(stream);
  if (s == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("unknown stream: ", std::string(stream)));
  }
  s->generator->SkipTimepoints(count);
  return absl::OkStatus();
}

std::vector<std::string> Simulator::MalformedSent(
    std::string_view stream) const {
  absl::MutexLock lock(&impl_->mu);
  const Impl::StreamState* s = impl_->Find(stream);
  if (s == nullptr) return {};
  return std::vector<std::string>(s->malformed.begin(), s->malformed.end());
}

Stats Simulator::GetStats() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->stats;
}

bool Simulator::WaitFor(const std::function<bool(const Stats&)>& predicate,
                        absl::Duration timeout) const {
  absl::MutexLock lock(&impl_->mu);
  const Impl* impl = impl_.get();
  auto holds = [impl, &predicate]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return predicate(impl->stats);
  };
  return impl_->mu.AwaitWithTimeout(absl::Condition(&holds), timeout);
}

void Simulator::DisconnectAll(CloseStyle style) {
  for (const auto& session : impl_->AllSessions()) session->Disconnect(style);
}

void Simulator::Stop() { impl_->Stop(); }

}  // namespace chstream::ingest::sim
