// Tests for server/stream_status_table.h against a real PostgreSQL 15 with
// the store's schema: what the leader records is what followers load (every
// field GetStatus, health and metrics use), rows of streams no longer
// followed go, and a former leader's Record is refused by the fence.
#include "server/stream_status_table.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres/postgres_store.h"
#include "tests/testing/postgres_server.h"

namespace chstream::server {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::SharedPostgresServer;
using ::chstream::testing::StatusIs;
using ::testing::HasSubstr;

ingest::StreamStatusSnapshot Sample(const std::string& stream) {
  ingest::StreamStatusSnapshot s;
  s.stream = stream;
  s.state = ingest::StreamState::kBackingOff;
  s.last_timepoint = 82000123;
  s.last_published_at = absl::FromUnixMicros(1764900000123456);
  s.last_event_at = absl::FromUnixMicros(1764900001000000);
  s.last_heartbeat_at = absl::FromUnixMicros(1764900002000000);
  s.next_retry_at = absl::FromUnixMicros(1764900003000000);
  s.events_total = 1234;
  s.heartbeats_total = 56;
  s.malformed_total = 2;
  s.duplicates_total = 3;
  s.reconnects_total = 4;
  s.reconnects_by_cause = {{"network_error", 3}, {"http_503", 1}};
  s.http_responses = {{200, 3}, {503, 1}};
  s.bytes_total = 987654;
  s.partial_lines_total = 1;
  s.last_error = "connection reset by peer; \"quoted\", with, commas";
  s.last_http_status = 503;
  s.lag_seconds = 1.5;
  s.reader_wait = absl::Milliseconds(250);
  s.gaps = {{.last_timepoint = 81999000,
             .recorded_at = absl::FromUnixMicros(1764800000000000)}};
  return s;
}

TEST(StreamStatusTableTest, RecordedIsLoadedAndAFormerLeaderIsFenced) {
  ASSERT_OK_AND_ASSIGN(auto* pg, SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(const std::string uri, pg->CreateDatabase());
  {
    // The schema, as chstreamd creates it.
    ASSERT_OK_AND_ASSIGN(auto store, storage::PostgresStore::Open(uri));
  }
  ASSERT_THAT(pg->Execute(uri,
                          "UPDATE cluster SET leader_epoch = 7, leader_id = "
                          "'a', heartbeat_at = now()"),
              IsOk());
  StreamStatusTable leader({.url = uri, .replica_id = "a"});
  StreamStatusTable follower({.url = uri, .replica_id = "b"});

  ASSERT_OK_AND_ASSIGN(StreamStatusTable::View empty, follower.Load());
  EXPECT_TRUE(empty.streams.empty());
  EXPECT_FALSE(empty.recorded_ago.has_value());
  EXPECT_EQ(empty.leader_id, "a");

  ingest::StreamStatusSnapshot fresh;  // as a stream that never connected
  fresh.stream = "filings";
  ASSERT_THAT(leader.Record(7, {Sample("companies"), fresh}), IsOk());
  ASSERT_OK_AND_ASSIGN(StreamStatusTable::View view, follower.Load());
  EXPECT_EQ(view.leader_epoch, 7);
  EXPECT_EQ(view.leader_id, "a");
  ASSERT_TRUE(view.heartbeat_ago.has_value());
  EXPECT_LT(*view.heartbeat_ago, absl::Seconds(30));
  ASSERT_TRUE(view.recorded_ago.has_value());
  EXPECT_LT(*view.recorded_ago, absl::Seconds(30));
  ASSERT_EQ(view.streams.size(), 2u);
  const ingest::StreamStatusSnapshot want = Sample("companies");
  const ingest::StreamStatusSnapshot& got = view.streams[0];
  EXPECT_EQ(got.stream, "companies");
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.last_timepoint, want.last_timepoint);
  EXPECT_EQ(got.last_published_at, want.last_published_at);
  EXPECT_EQ(got.last_event_at, want.last_event_at);
  EXPECT_EQ(got.last_heartbeat_at, want.last_heartbeat_at);
  EXPECT_EQ(got.connected_since, absl::InfinitePast());
  EXPECT_EQ(got.next_retry_at, want.next_retry_at);
  EXPECT_EQ(got.events_total, want.events_total);
  EXPECT_EQ(got.heartbeats_total, want.heartbeats_total);
  EXPECT_EQ(got.malformed_total, want.malformed_total);
  EXPECT_EQ(got.duplicates_total, want.duplicates_total);
  EXPECT_EQ(got.reconnects_total, want.reconnects_total);
  EXPECT_EQ(got.reconnects_by_cause, want.reconnects_by_cause);
  EXPECT_EQ(got.http_responses, want.http_responses);
  EXPECT_EQ(got.bytes_total, want.bytes_total);
  EXPECT_EQ(got.partial_lines_total, want.partial_lines_total);
  EXPECT_EQ(got.last_error, want.last_error);
  EXPECT_EQ(got.last_http_status, want.last_http_status);
  EXPECT_DOUBLE_EQ(got.lag_seconds, want.lag_seconds);
  EXPECT_EQ(got.reader_wait, want.reader_wait);
  ASSERT_EQ(got.gaps.size(), 1u);
  EXPECT_EQ(got.gaps[0].last_timepoint, want.gaps[0].last_timepoint);
  EXPECT_EQ(got.gaps[0].recorded_at, want.gaps[0].recorded_at);
  EXPECT_EQ(view.streams[1].stream, "filings");
  EXPECT_EQ(view.streams[1].state, ingest::StreamState::kConnecting);
  EXPECT_FALSE(view.streams[1].last_timepoint.has_value());
  EXPECT_EQ(view.streams[1].last_event_at, absl::InfinitePast());

  // The leader now follows only companies: the filings row goes.
  ASSERT_THAT(leader.Record(7, {Sample("companies")}), IsOk());
  ASSERT_OK_AND_ASSIGN(view, follower.Load());
  EXPECT_EQ(view.streams.size(), 1u);

  // A takeover: the former leader's picture is refused, nothing changes.
  ASSERT_THAT(pg->Execute(uri, "UPDATE cluster SET leader_epoch = 8"), IsOk());
  EXPECT_THAT(
      leader.Record(7, {fresh}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
  ASSERT_OK_AND_ASSIGN(view, follower.Load());
  ASSERT_EQ(view.streams.size(), 1u);
  EXPECT_EQ(view.streams[0].stream, "companies");
  // The same connection goes on working after the refusal.
  EXPECT_THAT(leader.Record(8, {fresh}), IsOk());
}

}  // namespace
}  // namespace chstream::server
