// File: ingest/simulator/simulator.h
//
// An in-process fake of the Companies House Streaming API
// (upstream-api.md §10): an HTTP/1.1 server, optionally over TLS, that
// serves the nine stream paths with the real wire protocol, so that chstream
// can run with no CH key and its tests exercise the real network code.
//
//   * GET /companies, /filings, ... (the nine paths); anything else is 404.
//     Basic auth: the username must be one of Options::keys, any password;
//     otherwise 401 {"error":"Invalid Authorization","type":"ch:service"}.
//   * Per stream, an append-only log of (timepoint, compact JSON line) made by
//     EventGenerator from the seed at a configured pace (or on demand at
//     rate 0), optionally capped at max_events_per_stream, after which only
//     heartbeats flow.
//   * ?timepoint=N replays inclusively from the first event with timepoint
//     >= N, then follows live; no timepoint tails from the head. Too old,
//     negative, non-numeric or future timepoints get 416 (configurable).
//     N = head + 1 (the usual "last + 1" resume) is valid and waits for the
//     next event. A connection that falls behind the retention window ends
//     cleanly; resuming it then gets 416.
//   * 200 responses are chunked; headers go out with the first body byte
//     (configurable); "\n" heartbeats every heartbeat_interval, not reset by
//     data, always between complete lines.
//   * Fault knobs (Faults), global or per stream, changeable at run time.
//   * Counters and the full event logs for tests to compare against.
//
// Threading: the server runs on its own asio io_context with
// Options::threads threads (one is enough for tens of thousands of events
// per second). Every public method is thread-safe. Timers (pacing,
// heartbeats, connection age, slow readers) use asio's steady clock;
// wall-clock values (published_at, the reconnect-rate window, connection
// ages) come from Options::clock.
//
// Memory: generated events are kept for replay until they fall out of the
// retention window: at most retention_bytes of event lines, all streams
// together (32 MiB by default, so chstreamd's embedded simulator stays flat
// however long it runs), and at most retention_events per stream.
//
//   Options options;
//   options.keys = {"test-key"};
//   options.max_events_per_stream = 100;
//   options.heartbeat_interval = absl::Milliseconds(50);
//   CHS_ASSIGN_OR_RETURN(auto sim, Simulator::Start(options));
//   // connect to sim->url() + "/companies?timepoint=82000000" ...
//   sim->SetFaults("companies", Faults{.stall = true});
//   std::vector<Simulator::LogEntry> log = sim->Log("companies");
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "ingest/simulator/event_generator.h"

namespace chstream::ingest::sim {

// What happens when a key already has max_connections_per_key streams open.
enum class CapMode {
  kRejectWith429,  // the new request gets 429
  kEvictOldest,  // the key's oldest stream ends cleanly; the new one is served
};

// How a connection ends after Faults::close_after_events events.
enum class CloseStyle {
  kReset,     // TCP RST (SO_LINGER 0): the client sees ECONNRESET
  kTruncate,  // FIN without the terminating 0-length chunk (and no TLS
              // close_notify)
  kClean,     // the terminating 0-length chunk, then FIN
};

// Fault injection. Chunking and lifecycle knobs apply per connection; all of
// them can be set globally and overridden per stream, at start or at run
// time (SetFaults); a change reaches open connections at once.
struct Faults {
  // --- Chunking (how lines are cut into HTTP chunks; the bytes are the same).
  // Non-zero: seed for cutting every line at 1-3 random byte offsets (at
  // least one inside a multi-byte UTF-8 character when the line has one).
  uint64_t split_random = 0;
  // Many lines (and heartbeats) per chunk instead of one chunk per line.
  bool coalesce = false;
  // Each line's terminating "\n" is sent as a chunk of its own.
  bool lone_newline_chunks = false;

  // --- Content.
  // After every N real events on a connection, one extra malformed line
  // (cycling through: truncated JSON, missing event.timepoint, bad
  // published_at, invalid UTF-8, a non-object). Malformed lines do not
  // consume events or timepoints; see Stats::malformed_sent and
  // Simulator::MalformedSent().
  int malformed_every = 0;

  // --- Connection lifecycle.
  // End each connection after it has sent this many real events (0 = off).
  int close_after_events = 0;
  CloseStyle close_style = CloseStyle::kReset;
  // Before closing (close_after_events), send the first half of the next
  // line, so the client is left with a partial line.
  bool close_mid_line = false;
  // No events are sent (heartbeats continue); the log keeps growing and
  // delivery resumes where it stopped when the stall is lifted.
  bool stall = false;
  // No heartbeats (the S7 bug). With stall and headers_on_first_byte, a
  // connection then receives nothing at all.
  bool heartbeats_die = false;
  // Connections end cleanly (terminating chunk) this long after they were
  // accepted.
  absl::Duration max_connection_age = absl::Hours(24);
  // Disconnect (RST) a client whose pending write has not completed for
  // this long (0 = never).
  absl::Duration slow_reader_timeout = absl::ZeroDuration();

  // --- Error responses.
  // The next K requests for a stream get `fail_status` (401, 429, 500, 502,
  // 503 or 504, with the HAProxy bodies of §5.1) after `fail_delay`.
  // Counted per stream from the moment the faults are set.
  int fail_first_attempts = 0;
  int fail_status = 503;
  absl::Duration fail_delay = absl::ZeroDuration();
  // >= 0: every 429 carries "Retry-After: N". Default: none, as upstream.
  int retry_after_seconds = -1;

  // --- Hostile input (what a broken or malicious upstream could send).
  // Non-empty: the lines that malformed_every injects are this text,
  // verbatim, instead of the built-in cycle.
  std::string malformed_line = "";
  // Non-empty: the body of the fail_first_attempts error responses (e.g.
  // bytes that are not UTF-8, or a body much longer than any real one).
  std::string fail_body = "";
  // Every response carries an extra "X-Padding" header of this many bytes.
  size_t header_bytes = 0;
  // Every chunk header carries a chunk extension (";x=vvv...") of this many
  // bytes. Real upstreams send none.
  size_t chunk_extension_bytes = 0;
};

struct Options {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port; see Simulator::port()
  // Valid stream keys (Basic auth usernames). Must not be empty.
  std::vector<std::string> keys;
  // PEM certificate chain and private key; both empty = plain HTTP.
  std::string tls_cert_pem;
  std::string tls_key_pem;

  uint64_t seed = 1;
  // Events per second on the companies stream; the other streams get
  // proportionally less (filings 0.8x, officers 0.4x, PSC 0.3x, charges and
  // PSC statements 0.1x, insolvency 0.05x, exemptions 0.02x, disqualified
  // officers 0.01x). 0 = as fast as the client reads (for benchmarks):
  // events are generated when a connection has sent everything so far.
  double companies_rate = 10;
  // Explicit rates by stream name, overriding the above.
  std::map<std::string, double> stream_rates;
  // First timepoint by stream name, overriding generator.first_timepoint
  // (chstreamd continues its embedded simulator after what it stored).
  std::map<std::string, int64_t> first_timepoints;
  // Streams that produce events; empty = all nine. The others are still
  // served but only send heartbeats.
  std::vector<std::string> streams;
  // Events generated before the server starts accepting (per producing
  // stream), so replay works at once.
  int64_t initial_events_per_stream = 0;
  // Cap on events per stream (-1 = none); after it only heartbeats flow.
  int64_t max_events_per_stream = -1;
  // How the events look (gaps, duplicates, deletions, escaping, ...).
  GeneratorOptions generator;

  absl::Duration heartbeat_interval = absl::Seconds(30);
  // Events kept per stream for replay (-1 = all, otherwise > 0).
  int64_t retention_events = -1;
  // Bytes of event lines kept for replay, all streams together (-1 = no
  // cap, otherwise > 0). When over it, the stream holding the most drops its
  // oldest events, so the streams share it equally. A timepoint older than a
  // stream's window gets 416, as from the real upstream after ~3 days. The
  // default is ~3.6 MiB per stream once all nine produce: about 5 minutes of
  // companies events at chstreamd's default 10 events/s (hours on the slow
  // streams), a few seconds at 2,000/s; a reconnect resumes inside it. Each
  // entry costs ~70 bytes of RSS beyond its line.
  int64_t retention_bytes = 32 << 20;
  // Status for a negative or non-numeric timepoint: 416 (default) or 400
  // (what CH's Go cache does).
  int invalid_timepoint_status = 416;
  // A timepoint beyond the head + 1: 416 (default), or tail from the head.
  bool future_timepoint_tails = false;
  // Send the status line and headers only with the first body byte (as CH's
  // Go front end does), or as soon as the request is accepted.
  bool headers_on_first_byte = true;

  int max_connections_per_key = 10;
  CapMode cap_mode = CapMode::kRejectWith429;
  // More than this many requests per key within a minute -> 429 (0 = off).
  int max_connects_per_minute = 0;

  Faults faults;
  int threads = 1;
  // Wall-clock source; nullptr = Clock::Real(). Not owned.
  Clock* clock = nullptr;
};

// Counters, all since Start().
struct Stats {
  int64_t connections_accepted = 0;  // TCP (and TLS) connections
  // (path without query, status) -> requests answered.
  std::map<std::pair<std::string, int>, int64_t> requests;
  // By stream name.
  std::map<std::string, int64_t> events_generated;
  std::map<std::string, int64_t> events_sent;  // real events written
  std::map<std::string, int64_t> malformed_sent;
  std::map<std::string, int64_t> heartbeats_sent;
  // Key -> streaming (200) connections currently open.
  std::map<std::string, int64_t> connections_by_key;
  int64_t evictions = 0;
  int64_t slow_reader_disconnects = 0;

  int64_t Requests(std::string_view path, int status) const;
  int64_t RequestsWithStatus(int status) const;
  int64_t OpenConnections() const;  // sum of connections_by_key
};

class Simulator {
 public:
  struct LogEntry {
    int64_t timepoint = 0;
    std::string line;  // compact JSON, without the trailing '\n'

    bool operator==(const LogEntry&) const = default;
  };

  // Binds, generates the initial events and starts serving.
  static absl::StatusOr<std::unique_ptr<Simulator>> Start(Options options);

  ~Simulator();  // Stop()s.
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  uint16_t port() const;
  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
  std::string url() const;

  // Replaces the global faults (streams with their own faults keep them).
  void SetFaults(const Faults& faults);
  // Replaces one stream's faults (overriding the global ones).
  void SetFaults(std::string_view stream, const Faults& faults);
  // Makes a stream follow the global faults again.
  void ClearStreamFaults(std::string_view stream);

  // Every retained event of a stream, oldest first (empty for an unknown
  // stream).
  std::vector<LogEntry> Log(std::string_view stream) const;
  // The newest event's timepoint, or 0 if the stream has none yet.
  int64_t HeadTimepoint(std::string_view stream) const;
  // Appends `count` events to a stream now, regardless of its rate and of
  // max_events_per_stream. Returns the new head timepoint.
  absl::StatusOr<int64_t> GenerateEvents(std::string_view stream,
                                         int64_t count);
  // The next event of the stream gets a timepoint at least `count` higher.
  absl::Status SkipTimepoints(std::string_view stream, int64_t count);
  // Malformed lines sent so far on a stream, in order (at most 10,000).
  std::vector<std::string> MalformedSent(std::string_view stream) const;

  // Ends every open connection now (the nightly cut, an incident): kClean
  // sends the terminating chunk, kTruncate a bare FIN, kReset an RST.
  // Connections still reading their request are simply closed.
  void DisconnectAll(CloseStyle style);

  Stats GetStats() const;
  // Blocks until `predicate(stats)` holds or `timeout` passes; returns
  // whether it held. For tests ("wait on conditions with deadlines").
  bool WaitFor(const std::function<bool(const Stats&)>& predicate,
               absl::Duration timeout) const;

  // Closes the listener and every connection (abruptly) and joins the
  // threads. Idempotent.
  void Stop();

 private:
  struct Impl;
  friend class Session;  // one connection, defined in simulator.cc
  explicit Simulator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chstream::ingest::sim
