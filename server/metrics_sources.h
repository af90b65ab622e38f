// File: server/metrics_sources.h
//
// chstream's exported metric set, computed at scrape time from the
// snapshots the components already keep (ingest streams, the event writer,
// the store, the subscriber registry), so nothing on a hot path changes.
//
// Every source is optional: an empty std::function exports nothing for it.
// The families (all prefixed chstream_):
//
//   build_info{version}                                   gauge, always 1
//   ingest_{events,bytes,heartbeats,malformed,duplicates,reconnects,
//           partial_lines,gaps}_total{stream}             counters
//   ingest_reader_wait_seconds_total{stream}              counter
//   ingest_stream_state{stream,state}                     gauge, 1 = current
//   ingest_committed_timepoint{stream}                    gauge
//   ingest_lag_seconds{stream}                            gauge
//   ingest_last_http_status{stream}                       gauge, 0 = none yet
//   ingest_last_{event,heartbeat}_timestamp_seconds{stream}  gauges
//   writer_{batches,events,duplicates,dead_letters,gaps,commit_errors,
//           items_dropped}_total                          counters
//   writer_queue_depth, writer_queue_capacity, writer_pushers_waiting
//   writer_commit_duration_seconds, writer_batch_items    histograms
//   store_{head_position,oldest_position,events,companies,dead_letters}
//   store_size_bytes                                      gauges
//   store_{events_pruned,dead_letters_pruned,prune_transactions,
//          prune_seconds}_total                           counters
//   store_prune_longest_seconds                           gauge
//   subscribers{mode="live"|"catching_up"}                gauge
//   subscriber_queued_events                              gauge
//   subscriber_events_sent_total, subscriber_fell_behind_total  counters
//
// The subscriber counters are kept monotonic across disconnects: each scrape
// adds what every connected subscriber sent since the previous scrape (by
// subscriber id). What a subscriber sent between the last scrape and its
// disconnect is not counted; exact totals need cumulative counters in the
// subscriber registry.
//
// Thread-safety: the collectors may run concurrently (they lock their own
// state); the sources are called from the scraping thread and must be
// thread-safe.
//
//   MetricsSources sources;
//   sources.version = kVersion;
//   sources.streams = [&] { return ingester->Snapshot(); };
//   sources.writer = [&] { return writer.GetStats(); };
//   RegisterChstreamMetrics(registry, sources);
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "chstream/v1/chstream.pb.h"
#include "ingest/stream_status.h"
#include "server/metrics.h"
#include "storage/event_writer.h"
#include "storage/store.h"

namespace chstream::server {

struct MetricsSources {
  std::string version;  // chstream_build_info; not exported when empty
  std::function<std::vector<ingest::StreamStatusSnapshot>()> streams;
  std::function<storage::EventWriter::Stats()> writer;
  // An error skips the store families for that scrape (and logs it).
  std::function<absl::StatusOr<storage::StoreStats>()> store;
  std::function<std::vector<v1::SubscriberStatus>()> subscribers;
  // Storage pages read to serve ReplayEvents and Subscribe catch-up.
  std::function<uint64_t()> replay_pages;
};

// Adds one collector per non-empty source. `sources` are copied; what they
// refer to must outlive every later registry.Render(). May be called again
// with other sources (e.g. `streams` once the ingester exists); giving the
// same source twice duplicates series, which Render() drops with a warning.
void RegisterChstreamMetrics(MetricsRegistry& registry,
                             const MetricsSources& sources);

}  // namespace chstream::server
