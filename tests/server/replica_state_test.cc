// GetStatus.replica and the replica metrics: ReplicaState on its own, and a
// whole SQLite chstreamd, which is "standalone" under its --replica_id
// (CHSTREAM_REPLICA_ID) or hostname:gRPC port.
#include "server/replica_state.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/daemon.h"
#include "server/metrics.h"
#include "tests/server/metrics_http_client.h"
#include "tests/storage/test_util.h"

namespace chstream::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ReplicaStateTest, RolesEpochsAndMetrics) {
  ReplicaState replica("a:1");
  MetricsRegistry registry;
  replica.RegisterMetrics(registry);
  v1::ReplicaStatus status;
  replica.Fill(&status);
  EXPECT_EQ(status.id(), "a:1");
  EXPECT_EQ(status.role(), "standalone");
  EXPECT_EQ(status.leader_id(), "");
  EXPECT_EQ(status.leader_epoch(), 0);
  EXPECT_THAT(registry.Render(),
              HasSubstr("chstream_replica_role{role=\"standalone\"} 1\n"));

  replica.Following("b:2", 4);
  replica.Fill(&status);
  EXPECT_EQ(status.role(), "follower");
  EXPECT_EQ(status.leader_id(), "b:2");
  EXPECT_EQ(status.leader_epoch(), 4);

  replica.BecameLeader(5);
  replica.Fill(&status);
  EXPECT_EQ(status.role(), "leader");
  EXPECT_EQ(status.leader_id(), "a:1");
  EXPECT_EQ(status.leader_epoch(), 5);
  const std::string metrics = registry.Render();
  EXPECT_THAT(metrics, HasSubstr("chstream_replica_role{role=\"leader\"} 1\n"));
  EXPECT_THAT(metrics,
              HasSubstr("chstream_replica_role{role=\"follower\"} 0\n"));
  EXPECT_THAT(metrics, HasSubstr("chstream_leader_epoch 5\n"));
  EXPECT_THAT(metrics, HasSubstr("chstream_leader_takeovers_total 1\n"));
}

TEST(ReplicaStateTest, DefaultIdIsHostnameAndPort) {
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof(host) - 1), 0);
  EXPECT_EQ(DefaultReplicaId(50051), absl::StrCat(host, ":50051"));
}

TEST(ReplicaStateTest, ReplicaIdSettingFromFlagAndEnvironment) {
  ConfigExit exit_request{-1, ""};
  ASSERT_OK_AND_ASSIGN(Config defaults, LoadConfig({}, {}, &exit_request));
  EXPECT_EQ(defaults.replica_id, "");
  ASSERT_OK_AND_ASSIGN(
      Config from_env,
      LoadConfig({}, {{"CHSTREAM_REPLICA_ID", "r-env"}}, &exit_request));
  EXPECT_EQ(from_env.replica_id, "r-env");
  ASSERT_OK_AND_ASSIGN(
      Config from_flag,
      LoadConfig({"--replica_id=r-flag"}, {{"CHSTREAM_REPLICA_ID", "r-env"}},
                 &exit_request));
  EXPECT_EQ(from_flag.replica_id, "r-flag");
}

absl::StatusOr<v1::GetStatusResponse> GetStatus(int port) {
  auto stub = v1::CompanyStream::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatusResponse response;
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response;
}

Config TestConfig() {
  Config c;
  c.db_path = storage::testing::TestDbPath();
  c.grpc_address = "127.0.0.1:0";
  c.metrics_address = "127.0.0.1:0";
  c.simulate = true;
  c.simulator_rate = 0;
  c.log_level = "warning";
  return c;
}

TEST(ReplicaStateTest, SqliteDaemonIsStandalone) {
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(TestConfig(), Clock::Real(), &exit_code));
  ASSERT_OK_AND_ASSIGN(v1::GetStatusResponse status,
                       GetStatus(daemon->grpc_port()));
  EXPECT_EQ(status.replica().id(), DefaultReplicaId(daemon->grpc_port()));
  EXPECT_EQ(status.replica().role(), "standalone");
  EXPECT_EQ(status.replica().leader_epoch(), 0);
  ASSERT_OK_AND_ASSIGN(
      testing::TestResponse metrics,
      testing::HttpRequest(daemon->http_port(), "GET", "/metrics"));
  EXPECT_THAT(metrics.body,
              HasSubstr("chstream_replica_role{role=\"standalone\"} 1\n"));
  EXPECT_THAT(metrics.body, HasSubstr("chstream_leader_takeovers_total 0\n"));
  // The status page's JSON carries it too.
  ASSERT_OK_AND_ASSIGN(
      testing::TestResponse json,
      testing::HttpRequest(daemon->http_port(), "GET", "/status.json"));
  EXPECT_THAT(json.body, HasSubstr("standalone"));
  daemon->Stop();

  Config named = TestConfig();
  named.replica_id = "replica-b";
  ASSERT_OK_AND_ASSIGN(daemon, Daemon::Start(named, Clock::Real(), &exit_code));
  ASSERT_OK_AND_ASSIGN(status, GetStatus(daemon->grpc_port()));
  EXPECT_EQ(status.replica().id(), "replica-b");
  EXPECT_THAT(status.replica().id(), Not(HasSubstr(":")));
}

}  // namespace
}  // namespace chstream::server
