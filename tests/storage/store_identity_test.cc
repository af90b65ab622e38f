// Tests of the store's identity (Store::store_id) and durability setting:
// a random id created with the database, kept across clean restarts, and
// replaced whenever positions could have been handed out again: after an
// unclean shutdown with synchronous=normal (a power loss may have dropped
// the last commits), or on request (a restored copy). An unclean shutdown is
// simulated by copying the database and its WAL while the store is open:
// that is what a crash (or an online file copy) leaves behind.
#include <filesystem>
#include <memory>
#include <string>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/schema.h"
#include "storage/sqlite.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::RemoveDbFiles;
using ::chstream::storage::testing::TestDbPath;
using ::chstream::storage::testing::TestTime;
using ::testing::MatchesRegex;
using ::testing::Not;

Store::Options WithSynchronous(bool full) {
  Store::Options o;
  o.synchronous_full = full;
  return o;
}

void CommitOne(Store& store, int64_t timepoint) {
  Batch batch;
  batch.events.push_back(MakeEvent("companies", timepoint));
  ASSERT_OK(store.Commit(std::move(batch), TestTime()));
}

// The files a crash of `from`'s process would leave, as a new database.
std::string CrashImage(const std::string& from, const std::string& suffix) {
  const std::string to = TestDbPath(suffix);
  for (const char* ext : {"", "-wal"}) {
    std::filesystem::copy_file(
        from + ext, to + ext,
        std::filesystem::copy_options::overwrite_existing);
  }
  return to;
}

TEST(StoreIdentityTest, DefaultIsSynchronousFull) {
  EXPECT_TRUE(Store::Options().synchronous_full);
}

// Verifies a new database gets a random 128-bit id, kept across clean
// restarts whatever the synchronous setting.
TEST(StoreIdentityTest, NewDatabaseGetsARandomIdKeptAcrossCleanRestarts) {
  const std::string a_path = TestDbPath("a");
  const std::string b_path = TestDbPath("b");
  std::string a_id;
  {
    ASSERT_OK_AND_ASSIGN(auto a, Store::Open(a_path, WithSynchronous(false)));
    ASSERT_OK_AND_ASSIGN(auto b, Store::Open(b_path));
    a_id = a->store_id();
    EXPECT_THAT(a_id, MatchesRegex("[0-9a-f]{32}"));
    EXPECT_NE(a_id, b->store_id());
    CommitOne(*a, 1);
  }
  ASSERT_OK_AND_ASSIGN(auto again, Store::Open(a_path));
  EXPECT_EQ(again->store_id(), a_id);
  again.reset();
  ASSERT_OK_AND_ASSIGN(auto normal,
                       Store::Open(a_path, WithSynchronous(false)));
  EXPECT_EQ(normal->store_id(), a_id);
}

// Verifies that after an unclean shutdown with synchronous=normal the store
// gets a new id: its last commits may be lost and their positions handed
// out again to other events.
TEST(StoreIdentityTest, UncleanShutdownWithSynchronousNormalGetsANewId) {
  const std::string path = TestDbPath();
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, WithSynchronous(false)));
  const std::string id = store->store_id();
  CommitOne(*store, 1);
  const std::string crashed = CrashImage(path, "crashed");

  ASSERT_OK_AND_ASSIGN(auto after_crash, Store::Open(crashed));
  EXPECT_THAT(after_crash->store_id(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(after_crash->store_id(), id);
  EXPECT_EQ(after_crash->HeadPosition(), 1u);
  // The new id is itself durable and stays.
  const std::string new_id = after_crash->store_id();
  after_crash.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, Store::Open(crashed));
  EXPECT_EQ(reopened->store_id(), new_id);

  // The original, closed cleanly, keeps its id.
  store.reset();
  ASSERT_OK_AND_ASSIGN(auto clean, Store::Open(path));
  EXPECT_EQ(clean->store_id(), id);
}

// Verifies that with synchronous=full (every commit durable before it is
// published) an unclean shutdown keeps the id: no position can be reused.
TEST(StoreIdentityTest, UncleanShutdownWithSynchronousFullKeepsTheId) {
  const std::string path = TestDbPath();
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, WithSynchronous(true)));
  CommitOne(*store, 1);
  const std::string crashed = CrashImage(path, "crashed");
  ASSERT_OK_AND_ASSIGN(auto after_crash, Store::Open(crashed));
  EXPECT_EQ(after_crash->store_id(), store->store_id());
}

// Verifies Options::new_store_id (chstreamd --new_store_id, after restoring
// a copy of the file) replaces the id once.
TEST(StoreIdentityTest, NewStoreIdOptionReplacesTheId) {
  const std::string path = TestDbPath();
  std::string id;
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
    id = store->store_id();
  }
  Store::Options o;
  o.new_store_id = true;
  std::string replaced;
  {
    ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, o));
    replaced = store->store_id();
    EXPECT_NE(replaced, id);
  }
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  EXPECT_EQ(store->store_id(), replaced);
}

// Verifies a database of an older schema (no identity yet) gets one when
// migrated.
TEST(StoreIdentityTest, MigratedDatabaseGetsAnId) {
  const std::string path = TestDbPath();
  {
    ASSERT_OK_AND_ASSIGN(
        Database db,
        Database::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
    ASSERT_OK(db.Exec("PRAGMA journal_mode = WAL"));
    ASSERT_OK(Migrate(db, 2));
  }
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
  EXPECT_THAT(store->store_id(), MatchesRegex("[0-9a-f]{32}"));
}

}  // namespace
}  // namespace chstream::storage
