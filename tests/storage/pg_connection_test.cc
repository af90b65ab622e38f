// PgConnection against a real PostgreSQL 15: the keepalive settings reach
// both libpq and the server session; errors tell a lost connection
// (Unavailable) from a failed statement (Internal) and never carry the
// URL's password.
#include "storage/postgres/pg_connection.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/postgres_server.h"

namespace chstream::storage::pg {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::SharedPostgresServer;
using ::chstream::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Show(PgConnection& conn, const std::string& setting) {
  absl::StatusOr<PgResult> r = conn.Exec("SHOW " + setting);
  return r.ok() ? std::string(r->Get(0, 0)) : r.status().ToString();
}

// libpq's view of a connection option.
std::string ClientOption(PgConnection& conn, const std::string& keyword) {
  std::string value;
  PQconninfoOption* options = PQconninfo(conn.get());
  for (PQconninfoOption* o = options; o != nullptr && o->keyword != nullptr;
       ++o) {
    if (keyword == o->keyword && o->val != nullptr) value = o->val;
  }
  PQconninfoFree(options);
  return value;
}

TEST(PgConnectionTest, KeepaliveSettingsReachClientAndServer) {
  ASSERT_OK_AND_ASSIGN(auto* server, SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(
      PgConnection conn,
      PgConnection::Connect(server->Uri(), "probe:1", KeepaliveParams()));
  // Server side (per session): a dead peer ends the session, and with it
  // the leader's advisory lock, within 5 + 2 * 3 = 11 s.
  EXPECT_EQ(Show(conn, "tcp_keepalives_idle"), "5");
  EXPECT_EQ(Show(conn, "tcp_keepalives_interval"), "2");
  EXPECT_EQ(Show(conn, "tcp_keepalives_count"), "3");
  EXPECT_EQ(Show(conn, "tcp_user_timeout"), "10000");  // ms
  EXPECT_EQ(Show(conn, "lock_timeout"), "5s");
  EXPECT_EQ(Show(conn, "application_name"), "probe:1");
  // Client side.
  EXPECT_EQ(ClientOption(conn, "keepalives_idle"), "5");
  EXPECT_EQ(ClientOption(conn, "keepalives_interval"), "2");
  EXPECT_EQ(ClientOption(conn, "keepalives_count"), "3");
  EXPECT_EQ(ClientOption(conn, "tcp_user_timeout"), "10000");
  EXPECT_EQ(ClientOption(conn, "connect_timeout"), "5");
  // The URL's own parts still apply.
  EXPECT_EQ(ClientOption(conn, "port"), absl::StrCat(server->port()));
  // And the session setup that every connection gets.
  EXPECT_EQ(Show(conn, "TimeZone"), "UTC");
}

// Verifies a connection without extra parameters keeps libpq's and the
// server's defaults, apart from the application name and connect_timeout.
TEST(PgConnectionTest, WithoutParamsOnlyTheApplicationNameIsSet) {
  ASSERT_OK_AND_ASSIGN(auto* server, SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(PgConnection conn,
                       PgConnection::Connect(server->Uri(), "plain"));
  EXPECT_EQ(Show(conn, "application_name"), "plain");
  EXPECT_EQ(Show(conn, "lock_timeout"), "0");
  EXPECT_EQ(ClientOption(conn, "connect_timeout"), "10");
  EXPECT_EQ(ClientOption(conn, "keepalives_idle"), "");
  EXPECT_GT(conn.backend_pid(), 0);
}

TEST(PgConnectionTest, ErrorsTellALostConnectionFromAFailedStatement) {
  ASSERT_OK_AND_ASSIGN(auto* server, SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(PgConnection conn,
                       PgConnection::Connect(server->Uri(), "test"));
  EXPECT_THAT(conn.Exec("SELECT nonsense FROM nowhere"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("nowhere")));
  EXPECT_TRUE(conn.healthy());
  ASSERT_OK_AND_ASSIGN(PgResult r,
                       conn.Query("SELECT $1::int + 1", {PgParam::Text("41")}));
  EXPECT_EQ(r.Get(0, 0), "42");
  EXPECT_EQ(r.GetInt64(0, 0), 42);

  ASSERT_THAT(server->Execute(server->Uri(),
                              absl::StrCat("SELECT pg_terminate_backend(",
                                           conn.backend_pid(), ")")),
              IsOk());
  EXPECT_THAT(conn.Exec("SELECT 1"), StatusIs(absl::StatusCode::kUnavailable,
                                              HasSubstr("connection lost")));
  EXPECT_FALSE(conn.healthy());
  EXPECT_THAT(
      conn.Query("SELECT $1::int", {PgParam::Int(1)}),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("connection lost")));
  // EnsureReady reconnects.
  ASSERT_THAT(conn.EnsureReady(), IsOk());
  EXPECT_TRUE(conn.healthy());
  EXPECT_THAT(conn.Exec("SELECT 1"), IsOk());
}

TEST(PgConnectionTest, ConnectErrorNeverShowsThePassword) {
  ASSERT_OK_AND_ASSIGN(auto* server, SharedPostgresServer());
  const std::string uri =
      absl::StrCat("postgresql://postgres:hunter2@127.0.0.1:", server->port(),
                   "/no_such_db");
  absl::StatusOr<PgConnection> conn = PgConnection::Connect(uri, "test");
  EXPECT_THAT(conn,
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no_such_db")));
  EXPECT_THAT(conn.status().ToString(), Not(HasSubstr("hunter2")));
  // Nor with the keepalive parameters (the cluster's connections).
  conn = PgConnection::Connect(uri, "test", KeepaliveParams());
  EXPECT_THAT(conn,
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no_such_db")));
  EXPECT_THAT(conn.status().ToString(), Not(HasSubstr("hunter2")));
}

}  // namespace
}  // namespace chstream::storage::pg
