// File: ingest/stream_status.h
//
// A point-in-time snapshot of one upstream stream's connection and counters,
// as shown by GetStatus, health and metrics. Plain data.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "ingest/reconnect_policy.h"

namespace chstream::ingest {


struct TimepointGapInfo {
  int64_t last_timepoint = 0;
  absl::Time recorded_at = absl::InfinitePast();
};

struct StreamStatusSnapshot {
  std::string stream;
  StreamState state = StreamState::kConnecting;
  std::optional<int64_t> last_timepoint;  // last committed
  absl::Time last_published_at = absl::InfinitePast();
  absl::Time last_event_at = absl::InfinitePast();
  absl::Time last_heartbeat_at = absl::InfinitePast();
  absl::Time connected_since = absl::InfinitePast();  // InfinitePast = not
  absl::Time next_retry_at = absl::InfinitePast();
  uint64_t events_total = 0;
  uint64_t heartbeats_total = 0;
  uint64_t malformed_total = 0;
  uint64_t duplicates_total = 0;
  uint64_t reconnects_total = 0;
  // How connections or attempts ended: "end_of_stream", "network_error",
  // "tls_error", "idle_timeout", or "http_<status>".
  std::map<std::string, uint64_t> reconnects_by_cause;
  // Every upstream response by HTTP status (200 included).
  std::map<int, uint64_t> http_responses;
  uint64_t bytes_total = 0;
  uint64_t partial_lines_total = 0;
  std::string last_error;
  int last_http_status = 0;
  double lag_seconds = 0;
  absl::Duration reader_wait = absl::ZeroDuration();
  std::vector<TimepointGapInfo> gaps;
};

}  // namespace chstream::ingest
