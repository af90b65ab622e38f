// chstreamd as a follower replica on PostgreSQL, in-process against a real
// PostgreSQL 15: while another replica (played by the test: a session
// holding the leader lock, a cluster row and a recorded stream_status row)
// leads, the daemon does not ingest, shows the leader's stream state and
// the leader in GetStatus, and its grpc.health "ingest" follows the
// leader's heartbeat (NOT_SERVING with the "leader" issue while it is
// older than 15 s); when the lock is released it takes over with the next
// epoch and ingests.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "cluster/leader_election.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/daemon.h"
#include "server/stream_status_table.h"
#include "storage/postgres/pg_connection.h"
#include "storage/postgres/postgres_store.h"
#include "tests/storage/test_util.h"
#include "tests/testing/postgres_server.h"

namespace chstream::server {
namespace {

using storage::testing::WaitUntil;
using ::testing::HasSubstr;

absl::StatusOr<v1::GetStatusResponse> Status(int port) {
  auto stub = v1::CompanyStream::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatusResponse response;
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response;
}

grpc::health::v1::HealthCheckResponse::ServingStatus IngestHealth(int port) {
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(kIngestHealthService);
  grpc::health::v1::HealthCheckResponse response;
  if (!health->Check(&ctx, request, &response).ok()) {
    return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

bool HasLeaderIssue(const v1::GetStatusResponse& s) {
  for (const v1::HealthIssue& issue : s.health().issues()) {
    if (issue.rule() == "leader" && issue.severity() == "failed" &&
        issue.message().find("no ingest leader") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Makes another replica, "elsewhere:50051", the leader of the fresh
// database `uri` at epoch 5: the returned connection holds the advisory lock
// (closing it lets a follower take over), and the cluster row's heartbeat
// is `heartbeat_at` (an SQL expression).
absl::StatusOr<std::unique_ptr<storage::pg::PgConnection>> LeadElsewhere(
    testing::PostgresServer* pg, const std::string& uri,
    const std::string& heartbeat_at) {
  {
    absl::StatusOr<std::unique_ptr<storage::PostgresStore>> store =
        storage::PostgresStore::Open(uri);  // creates the schema
    if (!store.ok()) return store.status();
  }
  absl::StatusOr<storage::pg::PgConnection> conn =
      storage::pg::PgConnection::Connect(uri, "test:elsewhere");
  if (!conn.ok()) return conn.status();
  auto holder = std::make_unique<storage::pg::PgConnection>(*std::move(conn));
  absl::StatusOr<storage::pg::PgResult> locked = holder->Exec(
      absl::StrCat("SELECT pg_advisory_lock(", cluster::kAdvisoryLockKey, ")"));
  if (!locked.ok()) return locked.status();
  absl::Status updated = pg->Execute(
      uri, absl::StrCat("UPDATE cluster SET leader_epoch = 5, leader_id = "
                        "'elsewhere:50051', heartbeat_at = ",
                        heartbeat_at));
  if (!updated.ok()) return updated;
  return holder;
}

// A replica "me" on `uri`, gRPC and metrics on free ports.
Config ReplicaConfig(const std::string& uri) {
  Config c;
  c.postgres_url = uri;
  c.grpc_address = "127.0.0.1:0";
  c.metrics_address = "127.0.0.1:0";
  c.log_level = "warning";
  c.replica_id = "me";
  return c;
}

TEST(DaemonFollowerTest, FollowsTheLeadersStateAndHeartbeatThenTakesOver) {
  ASSERT_OK_AND_ASSIGN(testing::PostgresServer * pg,
                       testing::SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(std::string uri, pg->CreateDatabase());
  // Another replica leads: it holds the lock; its last heartbeat was a
  // minute ago; it recorded its stream state.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::pg::PgConnection> elsewhere,
                       LeadElsewhere(pg, uri, "now() - interval '1 minute'"));
  ingest::StreamStatusSnapshot recorded;
  recorded.stream = "companies";
  recorded.state = ingest::StreamState::kStreaming;
  recorded.events_total = 4242;
  recorded.last_heartbeat_at = absl::Now();
  recorded.connected_since = absl::Now() - absl::Minutes(5);
  StreamStatusTable table({.url = uri, .replica_id = "elsewhere:50051"});
  ASSERT_OK(table.Record(5, {recorded}));

  Config c = ReplicaConfig(uri);
  c.simulate = true;
  c.simulator_rate = 200;
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(c, Clock::Real(), &exit_code));
  const int port = daemon->grpc_port();

  // A follower: the leader's picture; no leader heartbeat for a minute, so
  // ingest health fails with the "leader" rule.
  EXPECT_TRUE(WaitUntil([&] {
    absl::StatusOr<v1::GetStatusResponse> s = Status(port);
    return s.ok() && s->replica().role() == "follower" &&
           s->replica().leader_id() == "elsewhere:50051" &&
           s->replica().leader_epoch() == 5 && s->streams_size() == 1 &&
           s->streams(0).events_total() == 4242 &&
           s->streams(0).state() == v1::STREAM_STATE_STREAMING &&
           HasLeaderIssue(*s);
  }));
  EXPECT_TRUE(WaitUntil([&] {
    return IngestHealth(port) ==
           grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  }));
  EXPECT_EQ(daemon->writer(), nullptr);

  // The leader heartbeats again: the cluster ingests, so does "ingest".
  ASSERT_OK(pg->Execute(uri, "UPDATE cluster SET heartbeat_at = now()"));
  EXPECT_TRUE(WaitUntil([&] {
    return IngestHealth(port) == grpc::health::v1::HealthCheckResponse::SERVING;
  }));
  ASSERT_OK_AND_ASSIGN(v1::GetStatusResponse s, Status(port));
  EXPECT_FALSE(HasLeaderIssue(s));
  EXPECT_EQ(pg->QueryValue(uri, "SELECT count(*) FROM events").value_or(""),
            "0");

  // The leader goes away: this replica takes over with the next epoch and
  // ingests from its simulator.
  elsewhere.reset();
  EXPECT_TRUE(WaitUntil([&] {
    absl::StatusOr<v1::GetStatusResponse> s = Status(port);
    return s.ok() && s->replica().role() == "leader" &&
           s->replica().leader_id() == "me" &&
           s->replica().leader_epoch() == 6 && s->store().head_position() > 10;
  }));
  EXPECT_NE(daemon->writer(), nullptr);
  // Its own streams now, recorded for the followers.
  EXPECT_TRUE(WaitUntil([&] {
    return pg->QueryValue(uri,
                          "SELECT replica_id || ':' || leader_epoch FROM "
                          "stream_status WHERE stream = 'companies'")
               .value_or("") == "me:6";
  }));
  const absl::Time t0 = absl::Now();
  daemon->Stop();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(10));
}

// Verifies a bad ingest setting (here a --ca_file that does not exist, for
// an https upstream) stops start-up with exit code 2 on every replica, not
// only on the one that becomes leader: this replica would start as a
// follower (another replica holds the lock) and fail only at a takeover.
TEST(DaemonFollowerTest, BadIngestSettingFailsAtStartEvenWhenAnotherLeads) {
  ASSERT_OK_AND_ASSIGN(testing::PostgresServer * pg,
                       testing::SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(std::string uri, pg->CreateDatabase());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::pg::PgConnection> elsewhere,
                       LeadElsewhere(pg, uri, "now()"));

  Config c = ReplicaConfig(uri);
  c.api_keys = {"test-key"};
  c.upstream_url = "https://127.0.0.1:1";
  const char* tmp = std::getenv("TEST_TMPDIR");
  c.ca_file = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/missing-ca.pem");
  int exit_code = -1;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start(c, Clock::Real(), &exit_code);
  EXPECT_FALSE(daemon.ok());
  EXPECT_EQ(exit_code, 2);
  EXPECT_THAT(std::string(daemon.status().message()),
              HasSubstr("cannot start ingestion: invalid --ca_file"));
  // Nothing was taken over.
  EXPECT_EQ(
      pg->QueryValue(uri, "SELECT leader_epoch FROM cluster").value_or(""),
      "5");
}

}  // namespace
}  // namespace chstream::server
