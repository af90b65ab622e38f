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
// Timeouts: connect (DNS + TCP + TLS) 15 s; response headers 60 s (the
// upstream may hold them until its first heartbeat); an idle watchdog that
// reconnects when no byte at all, heartbeats included, arrived for
// idle_timeout.
//
// Threading: runs on the io_context it is given (one thread). Snapshot()
// and OnCommitted() may be called from any thread. Sink calls block the
// io thread while the writer queue is full (the wait is measured).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

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
