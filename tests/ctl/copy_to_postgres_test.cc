// chstreamctl copy-to-postgres, run as an operator runs it (a separate
// process), from a real SQLite file written by the real Store into a real
// PostgreSQL 15 server started by the test (tests/testing/postgres_server.h,
// with password authentication so that the password's absence from every
// output is checked). What PostgresStore reads afterwards must equal what
// the SQLite Store read before: events and positions, store_id, head,
// companies, stream states and gaps, dead letters.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite.h"
#include "storage/store.h"
#include "tests/ctl/ctl_runner.h"
#include "tests/storage/test_util.h"
#include "tests/testing/postgres_server.h"

namespace chstream {
namespace {

std::string Field(const std::string& output, const std::string& key) {
  return testing::ReportField(output, key);
}

using storage::Batch;
using storage::Event;
using storage::EventStore;
using storage::Gap;
using storage::PostgresStore;
using storage::Store;
using storage::testing::CompanyEvent;
using storage::testing::MakeDeadLetter;
using storage::testing::MakeEvent;
using storage::testing::TestDbPath;
using storage::testing::TestTime;
using testing::CtlResult;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "s3cret-Pw0rd";

// One server for the binary, with a password, started from the main thread
// (gtest runs the tests there).
testing::PostgresServer& Server() {
  static testing::PostgresServer* server = [] {
    testing::PostgresServer::Options options;
    options.password = kPassword;
    auto started = testing::PostgresServer::Start(options);
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) std::abort();
    return started->release();
  }();
  return *server;
}

std::string NewDatabase() {
  absl::StatusOr<std::string> uri = Server().CreateDatabase();
  EXPECT_TRUE(uri.ok()) << uri.status();
  EXPECT_THAT(*uri, HasSubstr(kPassword));  // the test means something
  return *uri;
}

// chstreamctl, checking that no output ever shows the password.
CtlResult RunCtl(const std::vector<std::string>& args) {
  CtlResult r = testing::RunCtl(args);
  EXPECT_THAT(r.output, Not(HasSubstr(kPassword)));
  return r;
}

CtlResult Copy(const std::string& db, const std::string& url) {
  return RunCtl(
      {"copy-to-postgres", "--db_path=" + db, "--postgres_url=" + url});
}

std::vector<Event> AllEvents(EventStore& store) {
  std::vector<Event> all;
  uint64_t after = 0;
  const uint64_t head = store.HeadPosition();
  while (after < head) {
    auto page = store.ReadPage(after, head, storage::Filter{}, 1000);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok() || page->scanned_through == after) break;
    for (Event& e : page->events) all.push_back(std::move(e));
    after = page->scanned_through;
  }
  return all;
}

// A store with something in every table: events of three streams (company
// profiles with data, updated in each round, the last one of SC100036 a
// deletion), a gap, dead letters.
void FillSqlite(Store& store) {
  for (int round = 0; round < 4; ++round) {
    Batch batch;
    for (int i = 0; i < 400; ++i) {
      const int tp = round * 1000 + i + 1;
      if (i % 4 == 0) {
        batch.events.push_back(CompanyEvent(
            tp, absl::StrCat("SC", 100000 + i % 40), absl::StrCat("NAME ", tp),
            round == 3 && i == 396 ? storage::EventType::kDeleted
                                   : storage::EventType::kChanged));
      } else {
        batch.events.push_back(MakeEvent(i % 2 ? "filings" : "officers", tp,
                                         absl::StrCat("0", 1000000 + i)));
      }
    }
    batch.dead_letters.push_back(
        MakeDeadLetter("filings", absl::StrCat("bad line ", round)));
    if (round == 2) {
      batch.gaps.push_back(Gap{"officers", 1500, TestTime(77)});
    }
    ASSERT_TRUE(store.Commit(std::move(batch), TestTime(round)).ok());
  }
}

TEST(CopyToPostgresTest, KeepsPositionsStoreIdAndEveryTable) {
  const std::string db = TestDbPath();
  std::vector<Event> events;
  std::string store_id;
  uint64_t head = 0;
  std::vector<storage::StreamState> states;
  std::vector<storage::DeadLetter> dead_letters;
  std::optional<storage::CompanyRecord> company, deleted;
  storage::StoreStats stats;
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok()) << store.status();
    FillSqlite(**store);
    events = AllEvents(**store);
    store_id = (*store)->store_id();
    head = (*store)->HeadPosition();
    states = *(*store)->LoadStreamStates();
    dead_letters = *(*store)->ReadDeadLetters(100);
    company = *(*store)->GetCompany("SC100004");
    deleted = *(*store)->GetCompany("SC100036");
    stats = *(*store)->Stats();
  }
  ASSERT_EQ(events.size(), 1600u);
  ASSERT_TRUE(company.has_value() && deleted.has_value());
  ASSERT_TRUE(deleted->deleted);
  ASSERT_EQ(states.size(), 3u);

  const std::string url = NewDatabase();
  CtlResult r = Copy(db, url);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(Field(r.output, "store_id"), store_id + " (kept)");
  EXPECT_EQ(Field(r.output, "head_position"), "1600");
  EXPECT_EQ(Field(r.output, "events"), "1600");
  EXPECT_EQ(Field(r.output, "dead_letters"), "4");
  EXPECT_EQ(Field(r.output, "gaps"), "1");
  EXPECT_EQ(Field(r.output, "companies"), "10");

  auto pg = PostgresStore::Open(url);
  ASSERT_TRUE(pg.ok()) << pg.status();
  EXPECT_EQ((*pg)->store_id(), store_id);
  EXPECT_EQ((*pg)->HeadPosition(), head);
  EXPECT_TRUE(AllEvents(**pg) == events);
  EXPECT_EQ(*(*pg)->LoadStreamStates(), states);
  EXPECT_EQ(*(*pg)->ReadDeadLetters(100), dead_letters);
  EXPECT_EQ(*(*pg)->GetCompany("SC100004"), company);
  EXPECT_EQ(*(*pg)->GetCompany("SC100036"), deleted);
  EXPECT_EQ((*pg)->OldestPosition().value_or(0), 1u);
  auto pg_stats = (*pg)->Stats();
  ASSERT_TRUE(pg_stats.ok());
  EXPECT_EQ(pg_stats->companies_stored, stats.companies_stored);
  EXPECT_EQ(pg_stats->dead_letters, stats.dead_letters);
  EXPECT_EQ(pg_stats->events_stored, 1600u);
  // Resources: copied once PostgreSQL has the table, else said so.
  absl::StatusOr<std::string> has_resources =
      Server().QueryValue(url, "SELECT to_regclass('resources') IS NOT NULL");
  ASSERT_TRUE(has_resources.ok());
  if (*has_resources == "t") {
    EXPECT_NE(Field(r.output, "resources"), "0");
  } else {
    EXPECT_THAT(r.output, HasSubstr("note: resources: "));
  }

  // The stores carries on from there: the next position, the timepoints
  // (a duplicate of a copied event is dropped), the next dead letter id.
  Batch more;
  more.events.push_back(MakeEvent("filings", 3399));  // copied already
  more.events.push_back(MakeEvent("filings", 5001));
  more.dead_letters.push_back(MakeDeadLetter("filings", "after the copy"));
  auto committed = (*pg)->Commit(std::move(more), TestTime(9));
  ASSERT_TRUE(committed.ok()) << committed.status();
  ASSERT_EQ(committed->events->size(), 1u);
  EXPECT_EQ(committed->events->front().position, 1601u);
  auto newest = (*pg)->ReadDeadLetters(1);
  ASSERT_TRUE(newest.ok());
  ASSERT_EQ(newest->size(), 1u);
  EXPECT_EQ(newest->front().reason, "after the copy");
}

TEST(CopyToPostgresTest, RefusesANonEmptyTargetAndLeavesItAlone) {
  const std::string db = TestDbPath();
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    FillSqlite(**store);
  }
  const std::string url = NewDatabase();
  ASSERT_EQ(Copy(db, url).exit_code, 0);
  const std::string before = *Server().QueryValue(
      url, "SELECT count(*) || ' ' || (SELECT head FROM cluster) FROM events");

  // Again into the same database: refused, nothing changed.
  CtlResult r = Copy(db, url);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("not empty"));
  EXPECT_THAT(r.output, HasSubstr("nothing was written"));
  EXPECT_EQ(*Server().QueryValue(url,
                                 "SELECT count(*) || ' ' || (SELECT head FROM "
                                 "cluster) FROM events"),
            before);

  // A chstream database with no event but a stream state (a chstreamd that
  // ran and stored nothing else) is not empty either.
  const std::string started = NewDatabase();
  ASSERT_TRUE(PostgresStore::Open(started).ok());
  ASSERT_TRUE(Server()
                  .Execute(started,
                           "INSERT INTO stream_state VALUES ('filings', 7, "
                           "now(), now())")
                  .ok());
  r = Copy(db, started);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("stream_state rows"));
  EXPECT_EQ(*Server().QueryValue(started, "SELECT count(*) FROM events"), "0");

  // A database that is not chstream's: refused untouched.
  const std::string foreign = NewDatabase();
  ASSERT_TRUE(Server().Execute(foreign, "CREATE TABLE orders (id int)").ok());
  r = Copy(db, foreign);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("not a chstream database"));
  EXPECT_EQ(*Server().QueryValue(foreign, "SELECT to_regclass('events')"), "");

  // An empty chstream schema (made by a chstreamd that stored nothing) is
  // fine; a chstreamd still connected to it is not.
  const std::string fresh = NewDatabase();
  {
    PostgresStore::Options options;
    options.application_name = "chstreamd";
    auto running = PostgresStore::Open(fresh, options);
    ASSERT_TRUE(running.ok()) << running.status();
    r = Copy(db, fresh);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("chstreamd connection(s) are open"));
  }
  r = Copy(db, fresh);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(CopyToPostgresTest, RefusesWhileTheSqliteDatabaseIsInUse) {
  const std::string db = TestDbPath();
  auto store = Store::Open(db);
  ASSERT_TRUE(store.ok());
  FillSqlite(**store);
  const std::string url = NewDatabase();
  CtlResult r = Copy(db, url);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("in use by another process"));
  EXPECT_EQ(*Server().QueryValue(url, "SELECT to_regclass('events')"), "");
  store->reset();
  EXPECT_EQ(Copy(db, url).exit_code, 0);
}

TEST(CopyToPostgresTest, RefusesDataPostgresHasNoColumnFor) {
  const std::string db = TestDbPath();
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    FillSqlite(**store);
  }
  {
    // A column only the SQLite side has, holding a value.
    auto raw = storage::Database::Open(db, SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw->Exec("ALTER TABLE events ADD COLUMN extra TEXT; "
                          "UPDATE events SET extra = 'x' WHERE position = 9")
                    .ok());
  }
  const std::string url = NewDatabase();
  CtlResult r = Copy(db, url);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("events.extra (1 rows)"));
  EXPECT_EQ(*Server().QueryValue(url, "SELECT count(*) FROM events"), "0");
  {
    // Empty, it is no loss: copied without it.
    auto raw = storage::Database::Open(db, SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw->Exec("UPDATE events SET extra = NULL").ok());
  }
  r = Copy(db, url);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(CopyToPostgresTest, WrongPasswordAndUsageErrors) {
  const std::string db = TestDbPath();
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    FillSqlite(**store);
  }
  std::string url = NewDatabase();
  const std::string wrong = "Wr0ng-Passw0rd";
  url.replace(url.find(kPassword), std::string(kPassword).size(), wrong);
  CtlResult r = Copy(db, url);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("postgresql://127.0.0.1"));
  EXPECT_THAT(r.output, Not(HasSubstr(wrong)));

  EXPECT_EQ(RunCtl({"copy-to-postgres", "--db_path=" + db}).exit_code, 2);
  r = RunCtl({"copy-to-postgres", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("--postgres_url"));
  r = Copy(TestDbPath(".missing"), NewDatabase());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("does not exist"));
}

}  // namespace
}  // namespace chstream
