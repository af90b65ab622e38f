// File: ingest/stream_client.h
//
// Follows one upstream stream (e.g. /companies) for as long as it runs:
// connects over HTTP/1.1 (TLS with peer and host-name verification for
// https://), sends Basic auth with the stream key, reads the chunked NDJSON
// body incrementally, frames and parses it, drops events at or below the
// last accepted timepoint, and hands events, dead letters and gaps to an
// EventSink. After every attempt the ReconnectPolicy decides when (and
// whether) to try again, and from which timepoint.
//
// Hostile input (the response is read by AsyncReadResponse,
// ingest/response_reader.h): the response headers are limited to 8 KiB and
// whatever the HTTP parser must buffer whole (headers, a chunk header line
// with its extensions, the trailer) to 64 KiB: beyond that the connection
// fails with a clear error and the policy backs off. Error bodies are kept
// to 4 KiB, cut at a UTF-8 boundary with invalid bytes replaced (they reach
// logs and the last_error proto string). Dead letters keep at most 64 KiB
// of a line; timepoints that jump more than max_timepoint_jump are
// dead-lettered.
//
// Timeouts: connect (DNS + TCP + TLS) 15 s; response headers 60 s (the
// upstream may hold them until its first heartbeat); an idle watchdog that
// reconnects when no byte at all, heartbeats included, arrived for
// idle_timeout.
//
// Threading: runs on the io_context it is given (one thread). Snapshot()
// and OnCommitted() may be called from any thread. Sink calls block the
// io thread while the writer queue is full (the wait is measured).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "ingest/connect_limiter.h"
#include "ingest/event_parser.h"
#include "ingest/event_sink.h"
#include "ingest/line_framer.h"
#include "ingest/reconnect_policy.h"
#include "ingest/stream_status.h"
#include "ingest/upstream_url.h"

namespace chstream::ingest {

struct StreamClientOptions {
  std::string stream;  // "companies", ...
  UpstreamUrl upstream;
  std::string key;  // the stream key; never logged
  absl::Duration connect_timeout = absl::Seconds(15);
  absl::Duration header_timeout = absl::Seconds(60);
  absl::Duration idle_timeout = absl::Seconds(90);
  size_t max_line_bytes = 8 << 20;
  // An event whose timepoint is more than this past the stream's last
  // accepted one (or that would overflow int64 on resume) is dead-lettered,
  // never committed: it would become the resume point, and every later real
  // event would be dropped as a duplicate. Real timepoints are Kafka offsets
  // (~10^8 in 2025, one per event).
  int64_t max_timepoint_jump = 1'000'000'000;
  // Last committed timepoint (from storage), if any.
  std::optional<int64_t> committed_timepoint;
  // With no committed timepoint: start here (inclusive) instead of the head.
  std::optional<int64_t> start_timepoint;
  ReconnectPolicy::Options policy;
  // Shared by the streams of one key (may be null): caps connection
  // attempts per minute.
  ConnectLimiter* limiter = nullptr;
  std::string user_agent = "chstream";
};

class StreamClient {
 public:
  // `ssl` may be null for http:// upstreams. Everything passed must outlive
  // the client.
  StreamClient(boost::asio::io_context& io, boost::asio::ssl::context* ssl,
               StreamClientOptions options, EventSink* sink, Clock* clock,
               std::function<double()> uniform01);
  ~StreamClient();

  // Starts following the stream (on the io thread).
  void Start();
  // Closes the connection and stops retrying; returns at once. The io
  // context must keep running until it has drained.
  void Stop();

  StreamStatusSnapshot Snapshot() const;

  // Storage committed a batch: `last` is this stream's last event in it
  // (null if none), `duplicates` how many it dropped as already stored.
  void OnCommitted(const storage::Event* last, uint64_t duplicates);

  const std::string& stream() const { return options_.stream; }

 private:
  class Session;
  friend class Session;

  void ScheduleAttempt(absl::Time at);
  void Attempt();
  void Connect();
  void OnAttemptDone(const Outcome& outcome);
  std::string RequestTarget();

  // Line handling (io thread).
  void HandleLine(std::string_view line);
  void HandleHeartbeat();
  void HandleOversized(std::string_view prefix, size_t total);
  // Hands a dead letter to the sink: at most the first 64 KiB of `line`
  // (whose full length is `total_bytes`), saying so in the reason.
  void DeadLetter(std::string reason, std::string_view line, size_t total_bytes,
                  std::optional<int64_t> timepoint);
  // Why `timepoint` (of an otherwise valid, non-duplicate event) must not be
  // accepted, or nullopt.
  std::optional<std::string> CheckTimepoint(int64_t timepoint) const;
  void HandleBytes(size_t n);
  void HandleConnected(int http_status);
  void HandlePartialLine(size_t bytes);
  void AddReaderWait(absl::Duration d);

  boost::asio::io_context& io_;
  boost::asio::ssl::context* const ssl_;
  const StreamClientOptions options_;
  EventSink* const sink_;
  Clock* const clock_;
  ReconnectPolicy policy_;
  EventParser parser_;
  boost::asio::steady_timer retry_timer_;
  std::shared_ptr<Session> session_;  // io thread only
  bool stopped_ = false;              // io thread only

  // io thread only: the highest timepoint handed to the sink (events at or
  // below it are duplicates), and whether to resume from the head.
  std::optional<int64_t> last_accepted_;
  bool resume_from_head_ = false;

  mutable absl::Mutex mu_;
  StreamStatusSnapshot status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream::ingest
