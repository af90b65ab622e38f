// PgConnection against a real PostgreSQL 15: the keepalive settings reach
// both libpq and the server session; errors tell a lost connection
// (Unavailable) from a failed statement (Internal) and never carry the
// URI's password.
#include "cluster/pg_connection.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/postgres_server.h"

namespace chstream::cluster {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::SharedPostgresServer;
using ::chstream::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Show(PgConnection& conn, const std::string& setting) {
  absl::StatusOr<PgResult> r = conn.Exec("SHOW " + setting);
  return r.ok() ? PQgetvalue(r->get(), 0, 0) : r.status().ToString();
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
      std::unique_ptr<PgConnection> conn,
      PgConnection::Connect(server->Uri(), KeepaliveParams("probe:1")));
  // Server side (per session): a dead peer ends the session, and with it
  // the leader's advisory lock, within 5 + 2 * 3 = 11 s.
  EXPECT_EQ(Show(*conn, "tcp_keepalives_idle"), "5");
  EXPECT_EQ(Show(*conn, "tcp_keepalives_interval"), "2");
  EXPECT_EQ(Show(*conn, "tcp_keepalives_count"), "3");
  EXPECT_EQ(Show(*conn, "tcp_user_timeout"), "10000");  // ms
  EXPECT_EQ(Show(*conn, "lock_timeout"), "5s");
  EXPECT_EQ(Show(*conn, "application_name"), "probe:1");
  // Client side.
  EXPECT_EQ(ClientOption(*conn, "keepalives_idle"), "5");
  EXPECT_EQ(ClientOption(*conn, "keepalives_interval"), "2");
  EXPECT_EQ(ClientOption(*conn, "keepalives_count"), "3");
  EXPECT_EQ(ClientOption(*conn, "tcp_user_timeout"), "10000");
  // The URI's own parts still apply.
  EXPECT_EQ(ClientOption(*conn, "port"), absl::StrCat(server->port()));
}

TEST(PgConnectionTest, ErrorsTellALostConnectionFromAFailedStatement) {
  ASSERT_OK_AND_ASSIGN(auto* server, SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PgConnection> conn,
                       PgConnection::Connect(server->Uri(), {}));
  EXPECT_THAT(conn->Exec("SELECT nonsense FROM nowhere"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("nowhere")));
  EXPECT_TRUE(conn->ok());
  ASSERT_OK_AND_ASSIGN(PgResult r, conn->Exec("SELECT $1::int + 1", {"41"}));
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "42");

  ASSERT_THAT(server->Execute(server->Uri(),
                              absl::StrCat("SELECT pg_terminate_backend(",
                                           conn->backend_pid(), ")")),
              IsOk());
  EXPECT_THAT(conn->Exec("SELECT 1"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("lost")));
  EXPECT_FALSE(conn->ok());
}

TEST(PgConnectionTest, ConnectErrorNeverShowsThePassword) {
  ASSERT_OK_AND_ASSIGN(auto* server, SharedPostgresServer());
  const std::string uri =
      absl::StrCat("postgresql://postgres:hunter2@127.0.0.1:", server->port(),
                   "/no_such_db");
  absl::StatusOr<std::unique_ptr<PgConnection>> conn =
      PgConnection::Connect(uri, {});
  EXPECT_THAT(
      conn, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no_such_db")));
  EXPECT_THAT(conn.status().ToString(), Not(HasSubstr("hunter2")));
}

}  // namespace
}  // namespace chstream::cluster
