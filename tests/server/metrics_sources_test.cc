#include "server/metrics_sources.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics.h"

namespace chstream::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

ingest::StreamStatusSnapshot CompaniesStream() {
  ingest::StreamStatusSnapshot s;
  s.stream = "companies";
  s.state = ingest::StreamState::kBackingOff;
  s.last_timepoint = 82000123;
  s.last_event_at = absl::FromUnixSeconds(1700000100);
  s.events_total = 1500;
  s.heartbeats_total = 30;
  s.malformed_total = 2;
  s.duplicates_total = 7;
  s.reconnects_total = 3;
  s.reconnects_by_cause = {{"http_503", 2}, {"idle_timeout", 1}};
  s.http_responses = {{200, 1}, {503, 2}};
  s.bytes_total = 4096000;
  s.partial_lines_total = 1;
  s.last_http_status = 503;
  s.lag_seconds = 1.5;
  s.reader_wait = absl::Milliseconds(2500);
  s.gaps.push_back({81000000, absl::FromUnixSeconds(1700000000)});
  return s;
}

TEST(MetricsSourcesTest, ExportsReplayPages) {
  MetricsRegistry registry;
  MetricsSources sources;
  sources.replay_pages = [] { return uint64_t{42}; };
  RegisterChstreamMetrics(registry, sources);
  EXPECT_THAT(registry.Render(),
              HasSubstr("chstream_replay_pages_read_total 42\n"));
}

TEST(MetricsSourcesTest, ExportsStreamSnapshots) {
  MetricsRegistry registry;
  MetricsSources sources;
  sources.streams = [] {
    ingest::StreamStatusSnapshot officers;
    officers.stream = "officers";
    officers.state = ingest::StreamState::kStreaming;
    return std::vector<ingest::StreamStatusSnapshot>{CompaniesStream(),
                                                     officers};
  };
  RegisterChstreamMetrics(registry, sources);
  const std::string text = registry.Render();
  for (const char* line : {
           "chstream_ingest_events_total{stream=\"companies\"} 1500\n",
           "chstream_ingest_events_total{stream=\"officers\"} 0\n",
           "chstream_ingest_bytes_total{stream=\"companies\"} 4096000\n",
           "chstream_ingest_heartbeats_total{stream=\"companies\"} 30\n",
           "chstream_ingest_malformed_total{stream=\"companies\"} 2\n",
           "chstream_ingest_duplicates_total{stream=\"companies\"} 7\n",
           "chstream_ingest_reconnects_total{stream=\"companies\"} 3\n",
           "chstream_ingest_reconnect_causes_total{stream=\"companies\","
           "cause=\"http_503\"} 2\n",
           "chstream_ingest_reconnect_causes_total{stream=\"companies\","
           "cause=\"idle_timeout\"} 1\n",
           "chstream_ingest_http_responses_total{stream=\"companies\","
           "code=\"503\"} 2\n",
           "chstream_ingest_partial_lines_total{stream=\"companies\"} 1\n",
           "chstream_ingest_gaps_total{stream=\"companies\"} 1\n",
           "chstream_ingest_reader_wait_seconds_total{stream=\"companies\"} "
           "2.5\n",
           "chstream_ingest_committed_timepoint{stream=\"companies\"} "
           "82000123\n",
           "chstream_ingest_lag_seconds{stream=\"companies\"} 1.5\n",
           "chstream_ingest_last_http_status{stream=\"companies\"} 503\n",
           "chstream_ingest_last_event_timestamp_seconds{stream=\"companies\"} "
           "1700000100\n",
       }) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  // Never-set values are absent rather than 0 or a bogus time.
  EXPECT_THAT(text, Not(HasSubstr("committed_timepoint{stream=\"officers\"}")));
  EXPECT_THAT(
      text,
      Not(HasSubstr("last_event_timestamp_seconds{stream=\"officers\"}")));
  EXPECT_THAT(
      text, Not(HasSubstr("chstream_ingest_last_heartbeat_timestamp_seconds")));
}

// Verifies the enum-as-gauge pattern: one series per state, 1 for the
// current one, so `chstream_ingest_stream_state{state="STREAMING"} == 0`
// alerts.
TEST(MetricsSourcesTest, StreamStateIsOneForTheCurrentStateOnly) {
  MetricsRegistry registry;
  MetricsSources sources;
  sources.streams = [] {
    return std::vector<ingest::StreamStatusSnapshot>{CompaniesStream()};
  };
  RegisterChstreamMetrics(registry, sources);
  const std::string text = registry.Render();
  const std::string prefix =
      "chstream_ingest_stream_state{stream=\"companies\",state=";
  EXPECT_THAT(text, HasSubstr(prefix + "\"BACKING_OFF\"} 1\n"));
  for (const char* other : {"CONNECTING", "STREAMING", "AUTH_FAILED",
                            "TIMEPOINT_EXPIRED", "CIRCUIT_OPEN", "STOPPED"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat(prefix, "\"", other, "\"} 0\n")));
  }
}

TEST(MetricsSourcesTest, ExportsWriterStatsWithHistograms) {
  MetricsRegistry registry;
  MetricsSources sources;
  sources.writer = [] {
    storage::EventWriter::Stats w;
    w.batches = 10;
    w.events = 900;
    w.duplicates = 4;
    w.dead_letters = 1;
    w.gaps = 0;
    w.queue_depth = 12;
    w.queue_capacity = 16384;
    w.pushers_waiting = 1;
    w.commit_errors = 2;
    w.items_dropped = 0;
    w.latency_bucket_bounds_seconds = {0.001, 0.01};
    w.latency_bucket_counts = {3, 6, 1};  // non-cumulative, +Inf last
    w.latency_sum_seconds = 0.07;
    w.latency_count = 10;
    w.batch_size_bucket_bounds = {1, 100};
    w.batch_size_bucket_counts = {2, 8, 0};
    w.batch_size_sum = 905;
    w.batch_size_count = 10;
    return w;
  };
  RegisterChstreamMetrics(registry, sources);
  const std::string text = registry.Render();
  for (const char* line : {
           "chstream_writer_batches_total 10\n",
           "chstream_writer_events_total 900\n",
           "chstream_writer_duplicates_total 4\n",
           "chstream_writer_dead_letters_total 1\n",
           "chstream_writer_gaps_total 0\n",
           "chstream_writer_commit_errors_total 2\n",
           "chstream_writer_items_dropped_total 0\n",
           "chstream_writer_queue_depth 12\n",
           "chstream_writer_queue_capacity 16384\n",
           "chstream_writer_pushers_waiting 1\n",
           "# TYPE chstream_writer_commit_duration_seconds histogram\n"
           "chstream_writer_commit_duration_seconds_bucket{le=\"0.001\"} 3\n"
           "chstream_writer_commit_duration_seconds_bucket{le=\"0.01\"} 9\n"
           "chstream_writer_commit_duration_seconds_bucket{le=\"+Inf\"} 10\n"
           "chstream_writer_commit_duration_seconds_sum 0.07\n"
           "chstream_writer_commit_duration_seconds_count 10\n",
           "chstream_writer_batch_items_bucket{le=\"100\"} 10\n",
       }) {
    EXPECT_THAT(text, HasSubstr(line));
  }
}

TEST(MetricsSourcesTest, ExportsStoreStatsAndSkipsThemOnError) {
  bool fail = false;
  MetricsRegistry registry;
  MetricsSources sources;
  sources.version = "1.2.3";
  sources.store = [&fail]() -> absl::StatusOr<storage::StoreStats> {
    if (fail) return absl::UnavailableError("database is locked");
    storage::StoreStats s;
    s.head_position = 1000;
    s.oldest_position = 1;
    s.events_stored = 1000;
    s.companies_stored = 250;
    s.dead_letters = 3;
    s.db_size_bytes = 1 << 20;
    return s;
  };
  RegisterChstreamMetrics(registry, sources);
  std::string text = registry.Render();
  for (const char* line : {
           "chstream_store_head_position 1000\n",
           "chstream_store_oldest_position 1\n",
           "chstream_store_events 1000\n",
           "chstream_store_companies 250\n",
           "chstream_store_dead_letters 3\n",
           "chstream_store_size_bytes 1048576\n",
           "chstream_build_info{version=\"1.2.3\"} 1\n",
       }) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  fail = true;
  text = registry.Render();
  EXPECT_THAT(text, Not(HasSubstr("chstream_store_")));
  EXPECT_THAT(text, HasSubstr("chstream_build_info"));
}

v1::SubscriberStatus Sub(const std::string& id, bool live, uint64_t sent,
                         uint64_t fell_behind, uint64_t queue_depth = 0) {
  v1::SubscriberStatus s;
  s.set_id(id);
  s.set_live(live);
  s.set_events_sent(sent);
  s.set_fell_behind_total(fell_behind);
  s.set_queue_depth(queue_depth);
  return s;
}

// Verifies that the subscriber counters never go backwards when
// subscribers disconnect, and count what new ones sent before the scrape.
TEST(MetricsSourcesTest, SubscriberCountersStayMonotonicAcrossDisconnects) {
  std::vector<v1::SubscriberStatus> subs;
  MetricsRegistry registry;
  MetricsSources sources;
  sources.subscribers = [&subs] { return subs; };
  RegisterChstreamMetrics(registry, sources);

  subs = {Sub("1", true, 5, 0, 2), Sub("2", false, 3, 1, 4)};
  std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("chstream_subscribers{mode=\"live\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("chstream_subscribers{mode=\"catching_up\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_queued_events 6\n"));
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_events_sent_total 8\n"));
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_fell_behind_total 1\n"));

  subs = {Sub("1", true, 7, 0)};  // "2" left
  text = registry.Render();
  EXPECT_THAT(text,
              HasSubstr("chstream_subscribers{mode=\"catching_up\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_events_sent_total 10\n"));
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_fell_behind_total 1\n"));

  subs = {Sub("1", true, 7, 0), Sub("3", false, 1, 2)};
  text = registry.Render();
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_events_sent_total 11\n"));
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_fell_behind_total 3\n"));

  subs = {};
  text = registry.Render();
  EXPECT_THAT(text, HasSubstr("chstream_subscribers{mode=\"live\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("chstream_subscriber_events_sent_total 11\n"));
}

// Verifies the start-up order main.cc needs: the streams source is added
// once the ingester exists, after the others.
TEST(MetricsSourcesTest, SourcesCanBeRegisteredInSeveralCalls) {
  MetricsRegistry registry;
  MetricsSources first;
  first.version = "1";
  first.writer = [] { return storage::EventWriter::Stats(); };
  RegisterChstreamMetrics(registry, first);
  EXPECT_THAT(registry.Render(), Not(HasSubstr("chstream_ingest_")));
  MetricsSources later;
  later.streams = [] {
    return std::vector<ingest::StreamStatusSnapshot>{CompaniesStream()};
  };
  RegisterChstreamMetrics(registry, later);
  const std::string text = registry.Render();
  EXPECT_THAT(
      text,
      HasSubstr("chstream_ingest_events_total{stream=\"companies\"} 1500\n"));
  EXPECT_THAT(text, HasSubstr("chstream_writer_batches_total 0\n"));
  EXPECT_THAT(text, HasSubstr("chstream_build_info{version=\"1\"} 1\n"));
}

TEST(MetricsSourcesTest, EmptySourcesExportNothing) {
  MetricsRegistry registry;
  RegisterChstreamMetrics(registry, MetricsSources());
  EXPECT_EQ(registry.Render(), "");
}

}  // namespace
}  // namespace chstream::server
