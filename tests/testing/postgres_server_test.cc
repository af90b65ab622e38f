// Tests for the throwaway PostgreSQL server fixture: it starts, hands out
// independent databases, survives a crash (Kill + Restart) and a fast
// restart with its data, and enforces a password when given one.
#include "tests/testing/postgres_server.h"

#include <signal.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PostgresServerTest, DatabasesAreIndependentAndSurviveCrashAndRestart) {
  ASSERT_OK_AND_ASSIGN(PostgresServer * server, SharedPostgresServer());
  ASSERT_GT(server->port(), 0);
  ASSERT_TRUE(server->running());
  EXPECT_EQ(server->socket_dir().rfind("/tmp/", 0), 0u);
  EXPECT_EQ(
      server->QueryValue(server->Uri(), "SELECT current_user").value_or(""),
      "postgres");

  ASSERT_OK_AND_ASSIGN(const std::string a, server->CreateDatabase());
  ASSERT_OK_AND_ASSIGN(const std::string b, server->CreateDatabase());
  EXPECT_NE(a, b);
  ASSERT_THAT(server->Execute(a,
                              "CREATE TABLE t (x int); INSERT INTO t "
                              "VALUES (1), (2)"),
              IsOk());
  EXPECT_EQ(server->QueryValue(a, "SELECT sum(x) FROM t").value_or(""), "3");
  // b is a separate database: no table t there.
  EXPECT_THAT(server->QueryValue(b, "SELECT count(*) FROM t"), Not(IsOk()));

  // Crash: the postmaster and its backends are gone, clients are refused.
  const pid_t old_pid = server->pid();
  ASSERT_THAT(server->Kill(), IsOk());
  EXPECT_FALSE(server->running());
  EXPECT_NE(::kill(old_pid, 0), 0);
  EXPECT_THAT(server->QueryValue(a, "SELECT 1"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("connect")));

  // Crash recovery keeps committed rows, on the same port.
  const int port = server->port();
  ASSERT_THAT(server->Restart(), IsOk());
  EXPECT_EQ(server->port(), port);
  EXPECT_EQ(server->QueryValue(a, "SELECT sum(x) FROM t").value_or(""), "3");

  // A fast restart (pg_ctl restart) ends open sessions and keeps the data.
  ASSERT_THAT(server->Execute(a, "INSERT INTO t VALUES (4)"), IsOk());
  ASSERT_THAT(server->Restart(), IsOk());
  EXPECT_EQ(server->QueryValue(a, "SELECT sum(x) FROM t").value_or(""), "7");
  EXPECT_THAT(server->Log(), Not(HasSubstr("PANIC")));
}

// A commit that returned is still there after a crash that follows at once.
// The WAL writer is slowed to its maximum (10 s) so that nothing but the
// commit itself can have written the WAL before the Kill: with the
// fixture's former synchronous_commit=off the row was gone after the
// restart, and the crash test above lost its rows whenever the Kill came
// within a few hundred ms of the INSERT (seen under --config=tsan: sum(x)
// came back "").
TEST(PostgresServerTest, CommitRightBeforeACrashSurvivesIt) {
  PostgresServer::Options options;
  options.settings = {"wal_writer_delay=10s"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start(options));
  ASSERT_OK_AND_ASSIGN(const std::string db, server->CreateDatabase());
  ASSERT_THAT(server->Execute(db, "CREATE TABLE t (x int)"), IsOk());
  ASSERT_THAT(server->Execute(db, "INSERT INTO t VALUES (42)"), IsOk());
  ASSERT_THAT(server->Kill(), IsOk());
  ASSERT_THAT(server->Restart(), IsOk());
  EXPECT_EQ(server->QueryValue(db, "SELECT sum(x) FROM t").value_or("error"),
            "42");
}

TEST(PostgresServerTest, PasswordIsRequiredWhenSet) {
  PostgresServer::Options options;
  options.password = "s3cret/pw";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start(options));
  EXPECT_THAT(server->Uri("postgres"), HasSubstr("postgres:s3cret%2Fpw@"));
  EXPECT_EQ(server->QueryValue(server->Uri(), "SELECT 1").value_or(""), "1");
  const std::string wrong = absl::StrCat(
      "postgresql://postgres:nope@127.0.0.1:", server->port(), "/postgres");
  EXPECT_THAT(server->QueryValue(wrong, "SELECT 1"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("password authentication failed")));
  const std::string dir = server->dir();
  server.reset();
  // Stopped and cleaned up.
  EXPECT_NE(::access(dir.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace chstream::testing
