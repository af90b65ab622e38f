// Tests for chstreamd on PostgreSQL (--postgres_url): the whole daemon
// in-process against a throwaway PostgreSQL 15 (tests/testing), following
// the real simulator and serving over a real gRPC port; start-up failures.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/daemon.h"
#include "tests/storage/test_util.h"
#include "tests/testing/postgres_server.h"

namespace chstream::server {
namespace {

using storage::testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::Not;

Config TestConfig(const std::string& postgres_url) {
  Config c;
  c.postgres_url = postgres_url;
  c.grpc_address = "127.0.0.1:0";
  c.metrics_address = "127.0.0.1:0";
  c.simulate = true;
  c.simulator_rate = 200;
  c.log_level = "warning";
  return c;
}

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

// Verifies chstreamd ingests into PostgreSQL, serves it, and resumes after a
// restart from what PostgreSQL holds (same store_id, positions go on).
TEST(DaemonPostgresTest, IngestsIntoPostgresAndResumesAfterRestart) {
  ASSERT_OK_AND_ASSIGN(testing::PostgresServer * server,
                       testing::SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(std::string uri, server->CreateDatabase());
  std::string store_id;
  uint64_t head = 0;
  {
    int exit_code = -1;
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<Daemon> daemon,
        Daemon::Start(TestConfig(uri), Clock::Real(), &exit_code));
    EXPECT_EQ(daemon->sqlite_store(), nullptr);
    EXPECT_TRUE(WaitUntil([&] {
      absl::StatusOr<v1::GetStatusResponse> s = Status(daemon->grpc_port());
      return s.ok() && s->store().head_position() > 10;
    }));
    ASSERT_OK_AND_ASSIGN(v1::GetStatusResponse s, Status(daemon->grpc_port()));
    EXPECT_THAT(s.store().db_path(), HasSubstr("postgresql://127.0.0.1:"));
    // The fixture's synchronous_commit=on.
    EXPECT_EQ(s.store().synchronous(), "full");
    store_id = s.store().store_id();
    EXPECT_EQ(store_id.size(), 32u);
    daemon->Stop();
    ASSERT_OK_AND_ASSIGN(std::string h,
                         server->QueryValue(uri, "SELECT head FROM cluster"));
    head = std::stoull(h);
    ASSERT_GT(head, 10u);
    ASSERT_OK_AND_ASSIGN(
        std::string n, server->QueryValue(uri, "SELECT count(*) FROM events"));
    EXPECT_EQ(n, h);  // dense: 1..head
  }
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Daemon> daemon,
      Daemon::Start(TestConfig(uri), Clock::Real(), &exit_code));
  EXPECT_TRUE(WaitUntil([&] {
    absl::StatusOr<v1::GetStatusResponse> s = Status(daemon->grpc_port());
    return s.ok() && s->store().head_position() > head + 10;
  }));
  ASSERT_OK_AND_ASSIGN(v1::GetStatusResponse s, Status(daemon->grpc_port()));
  EXPECT_EQ(s.store().store_id(), store_id);
  daemon->Stop();
  // The simulator resumed after the stored timepoint: no timepoint twice.
  ASSERT_OK_AND_ASSIGN(
      std::string dups,
      server->QueryValue(
          uri,
          "SELECT count(*) - count(DISTINCT (stream, timepoint)) "
          "FROM events"));
  EXPECT_EQ(dups, "0");
  ASSERT_OK_AND_ASSIGN(
      std::string gaps,
      server->QueryValue(uri,
                         "SELECT count(*) FROM events e WHERE position > 1 AND "
                         "NOT EXISTS (SELECT 1 FROM events p WHERE p.position "
                         "= e.position - 1)"));
  EXPECT_EQ(gaps, "0");
}

// Verifies retention on PostgreSQL end to end (it was refused with exit 2
// before): the oldest position moves, a cursor before it is OUT_OF_RANGE,
// and GetCompany / GetResource / ListCompanyResources still answer with the
// data of rows whose event was deleted.
TEST(DaemonPostgresTest, RetentionPrunesAndCurrentStateStillAnswers) {
  ASSERT_OK_AND_ASSIGN(testing::PostgresServer * server,
                       testing::SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(std::string uri, server->CreateDatabase());
  Config config = TestConfig(uri);
  config.retain_for = absl::Seconds(2);
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(config, Clock::Real(), &exit_code));
  // The first pass runs at start (nothing is old yet), the next 10 s later.
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::GetStatusResponse> s = Status(daemon->grpc_port());
        return s.ok() && s->store().oldest_position() > 1;
      },
      absl::Seconds(90)));
  ASSERT_OK_AND_ASSIGN(
      std::string company,
      server->QueryValue(
          uri,
          "SELECT company_number FROM companies WHERE data_position > 0 AND "
          "data_position < (SELECT min(position) FROM events) "
          "ORDER BY company_number LIMIT 1"));
  ASSERT_OK_AND_ASSIGN(
      std::string resource,
      server->QueryValue(
          uri,
          "SELECT resource_uri FROM resources WHERE data_position > 0 AND "
          "data_position < (SELECT min(position) FROM events) "
          "ORDER BY resource_uri LIMIT 1"));

  auto stub = v1::CompanyStream::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", daemon->grpc_port()),
                          grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    v1::GetCompanyRequest request;
    request.set_company_number(company);
    v1::Company response;
    grpc::Status s = stub->GetCompany(&ctx, request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(response.data().fields_size(), 0);
  }
  {
    grpc::ClientContext ctx;
    v1::GetResourceRequest request;
    request.set_resource_uri(resource);
    v1::Resource response;
    grpc::Status s = stub->GetResource(&ctx, request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(response.data().fields_size(), 0);
    if (!response.company_number().empty()) {
      grpc::ClientContext list_ctx;
      v1::ListCompanyResourcesRequest list;
      list.set_company_number(response.company_number());
      v1::ListCompanyResourcesResponse page;
      grpc::Status ls = stub->ListCompanyResources(&list_ctx, list, &page);
      ASSERT_TRUE(ls.ok()) << ls.error_message();
      EXPECT_GT(page.resources_size(), 0);
    }
  }
  {
    grpc::ClientContext ctx;
    v1::ReplayEventsRequest request;
    request.mutable_start()->set_after_position(0);
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader =
        stub->ReplayEvents(&ctx, request);
    v1::Event event;
    int read = 0;
    while (reader->Read(&event)) ++read;
    grpc::Status s = reader->Finish();
    EXPECT_EQ(read, 0);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE)
        << s.error_message();
  }
  daemon->Stop();
}

// Verifies an unreachable server or a wrong password stops start-up with
// exit code 2 and an error that names the server but not the password.
TEST(DaemonPostgresTest, UnusableDatabaseFailsWithExitCode2) {
  int exit_code = -1;
  // Port 1 on loopback: nothing listens.
  absl::StatusOr<std::unique_ptr<Daemon>> d = Daemon::Start(
      TestConfig("postgresql://chstream:hunter2-secret@127.0.0.1:1/chstream"),
      Clock::Real(), &exit_code);
  EXPECT_THAT(d, chstream::testing::StatusIs(absl::StatusCode::kUnavailable,
                                             ::testing::_));
  EXPECT_EQ(exit_code, 2);
  EXPECT_THAT(std::string(d.status().message()),
              HasSubstr("postgresql://127.0.0.1:1/..."));
  EXPECT_THAT(std::string(d.status().message()),
              Not(HasSubstr("hunter2-secret")));
}

// Verifies a wrong password (a server that asks for one: scram-sha-256)
// also stops start-up with exit code 2, naming the server and printing
// neither the wrong password nor the right one.
TEST(DaemonPostgresTest, WrongPasswordFailsWithExitCode2) {
  constexpr char kRight[] = "Right-Pw0rd-9c1";
  constexpr char kWrong[] = "Wrong-Pw0rd-4e7";
  testing::PostgresServer::Options options;
  options.password = kRight;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::PostgresServer> server,
                       testing::PostgresServer::Start(options));
  ASSERT_OK_AND_ASSIGN(std::string url, server->CreateDatabase());
  ASSERT_THAT(url, HasSubstr(kRight));  // the test means something
  url.replace(url.find(kRight), std::string(kRight).size(), kWrong);

  int exit_code = -1;
  absl::StatusOr<std::unique_ptr<Daemon>> d =
      Daemon::Start(TestConfig(url), Clock::Real(), &exit_code);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(exit_code, 2);
  const std::string message(d.status().message());
  EXPECT_THAT(message, HasSubstr("postgresql://127.0.0.1:"));
  EXPECT_THAT(message, Not(HasSubstr(kWrong)));
  EXPECT_THAT(message, Not(HasSubstr(kRight)));
}

TEST(DaemonPostgresConfigTest, PostgresUrlWithDbPathIsAStartUpError) {
  ConfigExit exit_request{-1, ""};
  absl::StatusOr<Config> c =
      LoadConfig({"--postgres_url=postgresql://u:pw-secret@db/chstream",
                  "--db_path=/tmp/x.db"},
                 {}, &exit_request);
  EXPECT_THAT(c, chstream::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("not both")));
  EXPECT_THAT(std::string(c.status().message()), Not(HasSubstr("pw-secret")));

  c = LoadConfig({},
                 {{"CHSTREAM_POSTGRES_URL", "postgresql://db/chstream"},
                  {"CHSTREAM_DB_PATH", "x.db"}},
                 &exit_request);
  EXPECT_THAT(c, chstream::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("not both")));

  // A conninfo string (which may carry a password) is refused unprinted.
  c = LoadConfig({"--postgres_url=host=db password=pw-secret"}, {},
                 &exit_request);
  EXPECT_THAT(c, chstream::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("libpq URI")));
  EXPECT_THAT(std::string(c.status().message()), Not(HasSubstr("pw-secret")));

  c = LoadConfig({}, {{"CHSTREAM_POSTGRES_URL", "postgresql://db/chstream"}},
                 &exit_request);
  ASSERT_OK(c.status());
  EXPECT_EQ(c->postgres_url, "postgresql://db/chstream");
}

}  // namespace
}  // namespace chstream::server
