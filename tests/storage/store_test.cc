// SQLite-specific Store tests. The behaviour every backend shares is in
// event_store_conformance_test.cc.
#include "storage/store.h"

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sqlite.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::CompanyEvent;
using ::chstream::storage::testing::FileSize;
using ::chstream::storage::testing::MakeDeadLetter;
using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::MakeFilter;
using ::chstream::storage::testing::Positions;
using ::chstream::storage::testing::TestDbPath;
using ::chstream::storage::testing::TestTime;
using ::chstream::storage::testing::Timepoints;
using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TestDbPath();
    auto store = Store::Open(path_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  void Reopen() {
    store_.reset();
    auto store = Store::Open(path_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  CommitResult CommitEvents(std::vector<Event> events,
                            absl::Time now = TestTime(999)) {
    return testing::CommitEvents(*store_, std::move(events), now);
  }
  std::vector<Event> ReadAll(const Filter& filter = {}) {
    return testing::ReadAll(*store_, filter);
  }

  std::string path_;
  std::unique_ptr<Store> store_;
};

// Verifies that a failed commit leaves nothing behind and that the same
// batch can then be committed (the pointer overload keeps it intact).
TEST_F(StoreTest, FailedCommitCommitsNothingAndCanBeRetried) {
  store_.reset();
  Store::Options options;
  options.busy_timeout = absl::ZeroDuration();
  ASSERT_OK_AND_ASSIGN(store_, Store::Open(path_, options));
  CommitEvents({MakeEvent("companies", 1)});

  // Another connection holds the write lock.
  ASSERT_OK_AND_ASSIGN(Database other,
                       Database::Open(path_, SQLITE_OPEN_READWRITE));
  ASSERT_OK(other.Exec("BEGIN IMMEDIATE"));

  Batch batch;
  batch.events = {MakeEvent("companies", 2), CompanyEvent(3, "X1", "X")};
  batch.dead_letters = {MakeDeadLetter("companies", "r")};
  batch.gaps = {Gap{"companies", 1, TestTime()}};
  EXPECT_THAT(store_->Commit(&batch, TestTime()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("locked")));
  EXPECT_EQ(store_->HeadPosition(), 1u);
  ASSERT_EQ(batch.events.size(), 2u);
  EXPECT_EQ(batch.events[0].timepoint, 2);
  EXPECT_EQ(batch.events[1].position, 0u);

  ASSERT_OK(other.Exec("ROLLBACK"));
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(&batch, TestTime()));
  EXPECT_THAT(Positions(*r.events), ElementsAre(2, 3));
  EXPECT_EQ(r.dead_letters, 1u);
  EXPECT_THAT(Timepoints(ReadAll()), ElementsAre(1, 2, 3));
  ASSERT_OK_AND_ASSIGN(auto company, store_->GetCompany("X1"));
  EXPECT_TRUE(company.has_value());
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store_->Stats());
  EXPECT_EQ(stats.companies_stored, 2u);  // 01234567 (first commit) and X1
  EXPECT_EQ(stats.dead_letters, 1u);
}

// Verifies that an event's data is stored once (issue 13): as data_pb
// when it has one (the JSON text is not written: the row is about half the
// size), as data_json otherwise; the live copy in the CommitResult keeps
// both.
TEST_F(StoreTest, EventDataIsStoredOnce) {
  Event both = CompanyEvent(1, "SC571653", "FC KIOSKS LTD");
  Event json_only = MakeEvent("filings", 2);
  json_only.data_pb.clear();
  ASSERT_FALSE(both.data_json.empty());
  ASSERT_FALSE(both.data_pb.empty());
  CommitResult r = CommitEvents({both, json_only});
  ASSERT_EQ(r.events->size(), 2u);
  EXPECT_EQ((*r.events)[0].data_json, both.data_json);

  std::vector<Event> read = ReadAll();
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].data_json, "");
  EXPECT_EQ(read[0].data_pb, both.data_pb);
  EXPECT_EQ(read[1].data_json, json_only.data_json);
  EXPECT_EQ(read[1].data_pb, "");
  ASSERT_OK_AND_ASSIGN(std::optional<CompanyRecord> company,
                       store_->GetCompany("SC571653"));
  ASSERT_TRUE(company.has_value());
  EXPECT_EQ(company->data_json, "");
  EXPECT_EQ(company->data_pb, both.data_pb);

  // On disk: no JSON text in the row of the event with Struct bytes.
  ASSERT_OK_AND_ASSIGN(Database db,
                       Database::Open(path_, SQLITE_OPEN_READONLY));
  ASSERT_OK_AND_ASSIGN(
      int64_t json_bytes,
      db.QueryInt64("SELECT length(data_json) FROM events WHERE position = 1"));
  EXPECT_EQ(json_bytes, 0);
}

TEST(FilterTest, MatchesAndAcrossFieldsOrWithin) {
  Event e = MakeEvent("filings", 1, "A0000001");
  EXPECT_TRUE(Filter{}.empty());
  EXPECT_TRUE(Filter{}.Matches(e));
  Filter f = MakeFilter({"companies", "filings"});
  EXPECT_FALSE(f.empty());
  EXPECT_TRUE(f.Matches(e));
  f.company_numbers = {"B0000002"};
  EXPECT_FALSE(f.Matches(e));
  f.company_numbers.push_back("A0000001");
  EXPECT_TRUE(f.Matches(e));
  f.types = {EventType::kDeleted};
  EXPECT_FALSE(f.Matches(e));
  f.types.push_back(EventType::kChanged);
  f.resource_kinds = {"filing-history"};
  EXPECT_TRUE(f.Matches(e));
}

// Verifies the background checkpointer keeps the WAL bounded under a
// sustained stream of commits (without it the WAL would hold everything).
TEST_F(StoreTest, WalStaysBoundedUnderSustainedCommits) {
  store_.reset();
  Store::Options options;
  options.checkpoint_bytes = 64 << 10;
  options.wal_limit_bytes = 512 << 10;
  ASSERT_OK_AND_ASSIGN(store_, Store::Open(path_, options));
  int64_t timepoint = 0;
  uint64_t max_wal = 0;
  for (int b = 0; b < 100; ++b) {
    std::vector<Event> events;
    for (int i = 0; i < 10; ++i) {
      Event e = MakeEvent("filings", ++timepoint);
      e.data_pb.assign(2500, 'p');
      events.push_back(std::move(e));
    }
    CommitEvents(std::move(events));
    max_wal = std::max<uint64_t>(max_wal, FileSize(path_ + "-wal"));
  }
  // 100 commits wrote well over 3 MB of pages; the WAL file never grew past
  // the limit plus one commit (and is truncated at twice the limit).
  EXPECT_GT(max_wal, 0u);
  EXPECT_LE(max_wal, uint64_t{1} << 20);
  Reopen();
  EXPECT_EQ(store_->HeadPosition(), 1000u);
  std::vector<Event> all = ReadAll();
  ASSERT_EQ(all.size(), 1000u);
  EXPECT_EQ(all.back().data_pb, std::string(2500, 'p'));
}

TEST(StoreOptionsTest, RejectsBadOptions) {
  const std::string path = TestDbPath();
  Store::Options options;
  options.read_connections = 0;
  EXPECT_THAT(Store::Open(path, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("read_connections")));
  options = Store::Options();
  options.wal_limit_bytes = options.checkpoint_bytes - 1;
  EXPECT_THAT(Store::Open(path, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("wal_limit_bytes")));
  EXPECT_FALSE(::chstream::storage::testing::FileExists(path));
}

}  // namespace
}  // namespace chstream::storage
