// File: ingest/ingester.h
//
// Follows a set of upstream streams: one StreamClient per stream on one
// io_context thread, streams spread over the configured keys (round robin,
// at most max_connections_per_key each), TLS context with the system CA
// store plus an optional extra bundle.
//
// Thread-safety: Start/Stop from one thread; Snapshot() and OnCommitted()
// from any thread.
//
//   Ingester ingester(options, &sink, Clock::Real());
//   CHS_RETURN_IF_ERROR(ingester.Start(store_states));
//   ... ingester.Snapshot() ...
//   ingester.Stop();
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include "absl/status/status.h"
#include "base/clock.h"
#include "ingest/connect_limiter.h"
#include "ingest/event_sink.h"
#include "ingest/stream_client.h"
#include "ingest/stream_status.h"
#include "storage/store.h"

namespace chstream::ingest {

struct IngesterOptions {
  std::string upstream_url;
  std::vector<std::string> keys;  // at least one
  std::vector<std::string> streams;
  std::string ca_file;            // extra PEM bundle, may be empty
  int max_connections_per_key = 10;
  // Connection attempts allowed per key per minute (all its streams).
  int max_connects_per_minute = 10;
  std::map<std::string, int64_t> start_timepoints;
  absl::Duration connect_timeout = absl::Seconds(15);
  absl::Duration header_timeout = absl::Seconds(60);
  absl::Duration idle_timeout = absl::Seconds(90);
  size_t max_line_bytes = 8 << 20;
  ReconnectPolicy::Options policy;
  uint64_t seed = 0;  // 0 = random
};

class Ingester {
 public:
  Ingester(IngesterOptions options, EventSink* sink, Clock* clock);
  ~Ingester();

  // `states` are the per-stream committed timepoints from storage. Fails on
  // a bad URL or CA file, or more streams than keys x cap.
  absl::Status Start(const std::vector<storage::StreamState>& states);
  // The checks Start() makes on `options` (URL, keys, streams x cap, the
  // system CA store and --ca_file), with the same errors, without starting
  // anything: for a process that may start ingesting only later.
  static absl::Status CheckOptions(const IngesterOptions& options);
  // Closes every connection and joins the io thread. Idempotent. The io
  // thread may be inside the sink (EventSink::Append blocks while the
  // writer queue is full, e.g. on a full disk): the caller must make the
  // sink return first (Daemon calls EventWriter::StopAccepting, after which
  // a WriterSink's push returns at once), or Stop waits for it.
  void Stop();

  std::vector<StreamStatusSnapshot> Snapshot() const;

  // Routes a storage commit to the streams it advanced.
  void OnCommitted(const storage::CommitResult& result);

 private:
  const IngesterOptions options_;
  EventSink* const sink_;
  Clock* const clock_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<
      boost::asio::io_context::executor_type>>
      work_;
  std::unique_ptr<boost::asio::ssl::context> ssl_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<ConnectLimiter>> limiters_;  // one per key
  std::vector<std::unique_ptr<StreamClient>> clients_;
  std::thread thread_;
};

}  // namespace chstream::ingest
