#include "server/metrics_sources.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/log.h"

namespace chstream::server {
namespace {

constexpr ingest::StreamState kAllStates[] = {
    ingest::StreamState::kConnecting,       ingest::StreamState::kStreaming,
    ingest::StreamState::kBackingOff,       ingest::StreamState::kAuthFailed,
    ingest::StreamState::kTimepointExpired, ingest::StreamState::kCircuitOpen,
    ingest::StreamState::kStopped,
};

double D(uint64_t v) { return static_cast<double>(v); }

double UnixSeconds(absl::Time t) {
  return absl::ToDoubleSeconds(t - absl::UnixEpoch());
}

void CollectStreams(const std::vector<ingest::StreamStatusSnapshot>& streams,
                    Collection& out) {
  for (const ingest::StreamStatusSnapshot& s : streams) {
    const Labels stream = {{"stream", s.stream}};
    out.AddCounter("chstream_ingest_events_total",
                   "Events read from the upstream and passed to storage.",
                   stream, D(s.events_total));
    out.AddCounter("chstream_ingest_bytes_total",
                   "Bytes read from the upstream response bodies.", stream,
                   D(s.bytes_total));
    out.AddCounter("chstream_ingest_heartbeats_total",
                   "Heartbeat (empty) lines received from the upstream.",
                   stream, D(s.heartbeats_total));
    out.AddCounter("chstream_ingest_malformed_total",
                   "Upstream lines dead-lettered as malformed or oversized.",
                   stream, D(s.malformed_total));
    out.AddCounter("chstream_ingest_duplicates_total",
                   "Events dropped because their timepoint was already "
                   "committed or seen.",
                   stream, D(s.duplicates_total));
    out.AddCounter("chstream_ingest_reconnects_total",
                   "Upstream connections or connection attempts that ended.",
                   stream, D(s.reconnects_total));
    for (const auto& [cause, n] : s.reconnects_by_cause) {
      out.AddCounter("chstream_ingest_reconnect_causes_total",
                     "Upstream connections or attempts that ended, by cause "
                     "(end_of_stream, network_error, tls_error, idle_timeout, "
                     "http_<status>).",
                     {{"stream", s.stream}, {"cause", cause}}, D(n));
    }
    for (const auto& [code, n] : s.http_responses) {
      out.AddCounter("chstream_ingest_http_responses_total",
                     "Upstream responses by HTTP status.",
                     {{"stream", s.stream}, {"code", absl::StrCat(code)}},
                     D(n));
    }
    out.AddCounter("chstream_ingest_partial_lines_total",
                   "Partial last lines dropped at the end of a response.",
                   stream, D(s.partial_lines_total));
    out.AddCounter("chstream_ingest_gaps_total",
                   "Timepoint gaps recorded after the upstream answered 416.",
                   stream, D(s.gaps.size()));
    out.AddCounter("chstream_ingest_reader_wait_seconds_total",
                   "Time the upstream reader waited for room in the writer "
                   "queue, in seconds.",
                   stream, absl::ToDoubleSeconds(s.reader_wait));
    for (ingest::StreamState state : kAllStates) {
      out.AddGauge("chstream_ingest_stream_state",
                   "Connection state of the upstream stream (1 for the "
                   "current state).",
                   {{"stream", s.stream},
                    {"state", std::string(ingest::StreamStateName(state))}},
                   s.state == state ? 1 : 0);
    }
    if (s.last_timepoint.has_value()) {
      out.AddGauge("chstream_ingest_committed_timepoint",
                   "Last upstream timepoint committed to storage.", stream,
                   static_cast<double>(*s.last_timepoint));
    }
    out.AddGauge("chstream_ingest_lag_seconds",
                 "Received minus published time of the last committed event, "
                 "in seconds.",
                 stream, s.lag_seconds);
    out.AddGauge("chstream_ingest_last_http_status",
                 "HTTP status of the last upstream response (0 before the "
                 "first).",
                 stream, s.last_http_status);
    if (s.last_event_at != absl::InfinitePast()) {
      out.AddGauge("chstream_ingest_last_event_timestamp_seconds",
                   "When the last event was read, in seconds since the Unix "
                   "epoch.",
                   stream, UnixSeconds(s.last_event_at));
    }
    if (s.last_heartbeat_at != absl::InfinitePast()) {
      out.AddGauge("chstream_ingest_last_heartbeat_timestamp_seconds",
                   "When the last heartbeat was read, in seconds since the "
                   "Unix epoch.",
                   stream, UnixSeconds(s.last_heartbeat_at));
    }
  }
}

void CollectWriter(const storage::EventWriter::Stats& w, Collection& out) {
  out.AddCounter("chstream_writer_batches_total",
                 "Transactions committed by the event writer.", {},
                 D(w.batches));
  out.AddCounter("chstream_writer_events_total", "Events committed.", {},
                 D(w.events));
  out.AddCounter("chstream_writer_duplicates_total",
                 "Events dropped by the store as duplicates.", {},
                 D(w.duplicates));
  out.AddCounter("chstream_writer_dead_letters_total",
                 "Dead letters committed.", {}, D(w.dead_letters));
  out.AddCounter("chstream_writer_gaps_total", "Gaps committed.", {},
                 D(w.gaps));
  out.AddCounter("chstream_writer_commit_errors_total",
                 "Failed commit attempts (each is retried).", {},
                 D(w.commit_errors));
  out.AddCounter("chstream_writer_items_dropped_total",
                 "Items given up after commit errors during shutdown.", {},
                 D(w.items_dropped));
  out.AddGauge("chstream_writer_queue_depth", "Items waiting to be committed.",
               {}, D(w.queue_depth));
  out.AddGauge("chstream_writer_queue_capacity",
               "Capacity of the writer queue, in items.", {},
               D(w.queue_capacity));
  out.AddGauge("chstream_writer_pushers_waiting",
               "Producers blocked on a full writer queue.", {},
               D(w.pushers_waiting));
  out.AddHistogram("chstream_writer_commit_duration_seconds",
                   "Duration of each storage commit, in seconds.", {},
                   {w.latency_bucket_bounds_seconds, w.latency_bucket_counts,
                    w.latency_sum_seconds});
  out.AddHistogram("chstream_writer_batch_items",
                   "Items (events, dead letters, gaps) per committed batch.",
                   {},
                   {w.batch_size_bucket_bounds, w.batch_size_bucket_counts,
                    w.batch_size_sum});
}

void CollectStore(const storage::StoreStats& s, Collection& out) {
  out.AddGauge("chstream_store_head_position",
               "Position of the newest stored event (0 when none).", {},
               D(s.head_position));
  out.AddGauge("chstream_store_oldest_position",
               "Position of the oldest stored event (0 when none).", {},
               D(s.oldest_position));
  out.AddGauge("chstream_store_events", "Events stored.", {},
               D(s.events_stored));
  out.AddGauge("chstream_store_companies", "Companies stored.", {},
               D(s.companies_stored));
  out.AddGauge("chstream_store_dead_letters", "Dead letters stored.", {},
               D(s.dead_letters));
  out.AddGauge("chstream_store_size_bytes",
               "Size of the database and its WAL file, in bytes.", {},
               D(s.db_size_bytes));
  // Retention (--retain_for, --retain_bytes, --retain_dead_letters_for).
  out.AddCounter("chstream_store_events_pruned_total",
                 "Events deleted by retention.", {}, D(s.events_pruned));
  out.AddCounter("chstream_store_dead_letters_pruned_total",
                 "Dead letters and gaps deleted by retention.", {},
                 D(s.dead_letters_pruned));
  out.AddCounter("chstream_store_prune_transactions_total",
                 "Retention transactions committed.", {},
                 D(s.prune_transactions));
  out.AddCounter("chstream_store_prune_seconds_total",
                 "Time spent in retention transactions (each holds up "
                 "commits while it runs), in seconds.",
                 {}, s.prune_seconds_total);
  out.AddGauge("chstream_store_prune_longest_seconds",
               "The longest retention transaction since start, in seconds.", {},
               s.longest_prune_seconds);
}

// Turns the per-subscriber counters of connected subscribers into totals
// that survive disconnects.
class SubscriberTotals {
 public:
  void Collect(const std::vector<v1::SubscriberStatus>& subscribers,
               Collection& out) {
    uint64_t live = 0;
    uint64_t catching_up = 0;
    uint64_t queued = 0;
    absl::flat_hash_map<std::string, Seen> now;
    for (const v1::SubscriberStatus& s : subscribers) {
      (s.live() ? live : catching_up)++;
      queued += s.queue_depth();
      Seen& seen = now[s.id()];
      seen.events_sent += s.events_sent();
      seen.fell_behind += s.fell_behind_total();
    }
    uint64_t events_sent;
    uint64_t fell_behind;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, cur] : now) {
        auto it = last_.find(id);
        const Seen prev = it == last_.end() ? Seen{} : it->second;
        // A counter that went backwards means a new subscriber reused the id.
        events_sent_ += cur.events_sent >= prev.events_sent
                            ? cur.events_sent - prev.events_sent
                            : cur.events_sent;
        fell_behind_ += cur.fell_behind >= prev.fell_behind
                            ? cur.fell_behind - prev.fell_behind
                            : cur.fell_behind;
      }
      last_ = std::move(now);
      events_sent = events_sent_;
      fell_behind = fell_behind_;
    }
    const char kModeHelp[] = "Connected Subscribe calls by mode.";
    out.AddGauge("chstream_subscribers", kModeHelp, {{"mode", "live"}},
                 D(live));
    out.AddGauge("chstream_subscribers", kModeHelp, {{"mode", "catching_up"}},
                 D(catching_up));
    out.AddGauge("chstream_subscriber_queued_events",
                 "Events waiting in the live queues of all subscribers.", {},
                 D(queued));
    out.AddCounter("chstream_subscriber_events_sent_total",
                   "Events sent to subscribers (counted at each scrape).", {},
                   D(events_sent));
    out.AddCounter("chstream_subscriber_fell_behind_total",
                   "Times a subscriber's live queue overflowed and it went "
                   "back to reading storage (counted at each scrape).",
                   {}, D(fell_behind));
  }

 private:
  struct Seen {
    uint64_t events_sent = 0;
    uint64_t fell_behind = 0;
  };
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Seen> last_ ABSL_GUARDED_BY(mu_);
  uint64_t events_sent_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fell_behind_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

void RegisterChstreamMetrics(MetricsRegistry& registry,
                             const MetricsSources& sources) {
  if (!sources.version.empty()) {
    registry
        .AddGauge("chstream_build_info",
                  "The running chstream version (always 1).",
                  {{"version", sources.version}})
        .Set(1);
  }
  if (sources.streams) {
    registry.AddCollector(
        [fn = sources.streams](Collection& out) { CollectStreams(fn(), out); });
  }
  if (sources.writer) {
    registry.AddCollector(
        [fn = sources.writer](Collection& out) { CollectWriter(fn(), out); });
  }
  if (sources.store) {
    registry.AddCollector([fn = sources.store](Collection& out) {
      absl::StatusOr<storage::StoreStats> stats = fn();
      if (!stats.ok()) {
        log::Warning("metrics: cannot read store stats",
                     {{"error", stats.status()}});
        return;
      }
      CollectStore(*stats, out);
    });
  }
  if (sources.replay_pages) {
    registry.AddCollector([fn = sources.replay_pages](Collection& out) {
      out.AddCounter("chstream_replay_pages_read_total",
                     "Storage pages read to serve ReplayEvents and Subscribe "
                     "catch-up.",
                     {}, D(fn()));
    });
  }
  if (sources.subscribers) {
    auto totals = std::make_shared<SubscriberTotals>();
    registry.AddCollector([fn = sources.subscribers, totals](Collection& out) {
      totals->Collect(fn(), out);
    });
  }
}

}  // namespace chstream::server
