// The real chstreamctl binary, run as a separate process (as an operator
// runs it) against real SQLite files, while a real Store in this process
// keeps the database open and commits: the same locks and WAL a running
// chstreamd holds.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/schema.h"
#include "storage/store.h"
#include "tests/ctl/ctl_runner.h"
#include "tests/storage/test_util.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

std::string Field(const std::string& output, const std::string& key) {
  return testing::ReportField(output, key);
}

using storage::Batch;
using storage::Event;
using storage::Store;
using storage::testing::CompanyEvent;
using storage::testing::FileExists;
using storage::testing::MakeDeadLetter;
using storage::testing::MakeEvent;
using storage::testing::ReadFileBytes;
using storage::testing::TestDbPath;
using storage::testing::TestTime;
using storage::testing::WriteFileBytes;
using testing::CtlResult;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunCtl;

// Commits `n` events (every fifth a company profile with data) in batches.
void Fill(Store& store, int first_timepoint, int n) {
  Batch batch;
  for (int i = 0; i < n; ++i) {
    const int tp = first_timepoint + i;
    batch.events.push_back(
        i % 5 == 0 ? CompanyEvent(tp, absl::StrCat("C", tp % 997), "NAME")
                   : MakeEvent("filing-history", tp, "01234567"));
    if (batch.events.size() == 100 || i == n - 1) {
      ASSERT_TRUE(store.Commit(std::move(batch), TestTime()).ok());
      batch = Batch();
    }
  }
}

// Files chstreamctl left behind under a temporary name.
std::vector<std::string> TempFiles() {
  std::vector<std::string> found;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::getenv("TEST_TMPDIR"))) {
    const std::string name = entry.path().filename();
    if (absl::StrContains(name, ".tmp")) found.push_back(name);
  }
  return found;
}

std::vector<Event> AllEvents(Store& store, uint64_t up_to) {
  std::vector<Event> all;
  uint64_t after = 0;
  while (after < up_to) {
    auto page = store.ReadPage(after, up_to, storage::Filter{}, 1000);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    for (Event& e : page->events) all.push_back(std::move(e));
    if (page->scanned_through == after) break;
    after = page->scanned_through;
  }
  return all;
}

TEST(ChstreamctlTest, UsageErrorsExit2AndHelpExits0) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"check"},
           {"check", "--db_path=x", "--bogus"},
           {"check", "stray"},
           {"backup", "--db_path=x"},
           {"restore", "--from=x"},
           {"dead-letters", "--db_path=x", "--limit=0"},
           {"dead-letters", "--db_path=x", "--limit"},
       }) {
    CtlResult r = RunCtl(args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(args, " ") << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("chstreamctl")) << r.output;
  }
  EXPECT_EQ(RunCtl({"--help"}).exit_code, 0);
  for (const char* command : {"backup", "restore", "check", "dead-letters"}) {
    CtlResult r = RunCtl({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_THAT(r.output,
                HasSubstr(absl::StrCat("usage: chstreamctl ", command)));
    EXPECT_THAT(r.output, HasSubstr("exit codes"));
  }
}

TEST(ChstreamctlTest, BackupWhileWriterCommitsIsConsistentAndChecked) {
  const std::string db = TestDbPath();
  const std::string copy = TestDbPath(".backup");
  auto store = Store::Open(db);
  ASSERT_TRUE(store.ok()) << store.status();
  // ~10 MB: several backup steps of 4 MB.
  Fill(**store, 1, 4000);

  std::atomic<bool> stop{false};
  std::atomic<int> commits{0};
  std::thread writer([&] {
    int tp = 100000;
    while (!stop.load()) {
      Batch batch;
      for (int i = 0; i < 20; ++i) {
        batch.events.push_back(MakeEvent("filing-history", tp++, "07654321"));
      }
      ASSERT_TRUE((*store)->Commit(std::move(batch), TestTime()).ok());
      commits.fetch_add(1);
    }
  });
  ASSERT_TRUE(testing::WaitUntil([&] { return commits.load() > 0; },
                                 absl::Seconds(30)));
  const int commits_before = commits.load();
  CtlResult backup = RunCtl({"backup", "--db_path=" + db, "--out=" + copy});
  const int commits_during = commits.load() - commits_before;
  stop = true;
  writer.join();
  ASSERT_EQ(backup.exit_code, 0) << backup.output;
  // The writer was not held up: it kept committing while the copy ran.
  EXPECT_GT(commits_during, 0);
  EXPECT_THAT(backup.output, HasSubstr("integrity_check: ok"));
  EXPECT_THAT(backup.output, HasSubstr("status: OK"));
  EXPECT_FALSE(FileExists(copy + "-wal"));
  EXPECT_FALSE(FileExists(copy + "-shm"));
  EXPECT_THAT(TempFiles(), ::testing::IsEmpty());

  CtlResult check = RunCtl({"check", "--db_path=" + copy});
  ASSERT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(Field(check.output, "store_id"), (*store)->store_id());
  const uint64_t copy_head = std::stoull(Field(check.output, "head_position"));
  EXPECT_GE(copy_head, 4000u);
  EXPECT_LE(copy_head, (*store)->HeadPosition());
  EXPECT_EQ(Field(check.output, "events"), absl::StrCat(copy_head));
  // "N (this binary writes N)": the copy is at the binary's version.
  EXPECT_EQ(
      Field(check.output, "schema_version"),
      absl::StrCat(storage::LatestSchemaVersion(), " (this binary writes ",
                   storage::LatestSchemaVersion(), ")"));

  // Every event up to the copy's head is identical to the live one.
  const std::vector<Event> live = AllEvents(**store, copy_head);
  Store::Options options;
  auto copied = Store::Open(copy, options);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ((*copied)->HeadPosition(), copy_head);
  const std::vector<Event> backed_up = AllEvents(**copied, copy_head);
  ASSERT_EQ(backed_up.size(), copy_head);
  EXPECT_TRUE(backed_up == live);
}

TEST(ChstreamctlTest, BackupRefusesExistingOutputUnlessForced) {
  const std::string db = TestDbPath();
  const std::string out = TestDbPath(".out");
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    Fill(**store, 1, 10);
  }
  WriteFileBytes(out, "precious");
  CtlResult r = RunCtl({"backup", "--db_path=" + db, "--out=" + out});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("already exists; pass --force"));
  EXPECT_EQ(ReadFileBytes(out), "precious");

  r = RunCtl({"backup", "--db_path=" + db, "--out=" + out, "--force"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(RunCtl({"check", "--db_path=" + out}).exit_code, 0);

  // A missing source leaves nothing behind.
  const std::string none = TestDbPath(".none");
  r = RunCtl(
      {"backup", "--db_path=" + TestDbPath(".missing"), "--out=" + none});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("does not exist"));
  EXPECT_FALSE(FileExists(none));
}

TEST(ChstreamctlTest, RestoreRefusesWhileInUseThenGivesNewStoreId) {
  const std::string db = TestDbPath();
  const std::string backup = TestDbPath(".backup");
  auto store = Store::Open(db);
  ASSERT_TRUE(store.ok());
  Fill(**store, 1, 300);
  ASSERT_EQ(RunCtl({"backup", "--db_path=" + db, "--out=" + backup}).exit_code,
            0);
  const std::string old_id = (*store)->store_id();
  // Positions after the backup point: restoring loses them, and they will
  // be given to other events.
  Fill(**store, 1000, 50);
  const std::vector<Event> backed_up = AllEvents(**store, 300);

  CtlResult r = RunCtl({"restore", "--from=" + backup, "--db_path=" + db});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("in use by another process"));
  EXPECT_EQ((*store)->HeadPosition(), 350u);
  // Still writable: the refusal left no lock behind.
  Fill(**store, 2000, 1);
  store->reset();

  // What a crashed process leaves: stale -wal and -shm.
  WriteFileBytes(db + "-wal", std::string(4096, 'w'));
  WriteFileBytes(db + "-shm", std::string(32768, 's'));
  // The restored file keeps the mode of the one it replaces.
  ASSERT_EQ(::chmod(db.c_str(), 0640), 0);
  r = RunCtl({"restore", "--from=" + backup, "--db_path=" + db});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  struct stat st;
  ASSERT_EQ(::stat(db.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_FALSE(FileExists(db + "-wal"));
  EXPECT_FALSE(FileExists(db + "-shm"));
  EXPECT_THAT(TempFiles(), ::testing::IsEmpty());
  const std::string new_id = Field(r.output, "store_id");
  EXPECT_EQ(new_id.size(), 32u);
  EXPECT_NE(new_id, old_id);

  auto restored = Store::Open(db);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->store_id(), new_id);
  EXPECT_EQ((*restored)->HeadPosition(), 300u);
  EXPECT_TRUE(AllEvents(**restored, 300) == backed_up);
  // The backup itself is untouched.
  EXPECT_EQ(Field(RunCtl({"check", "--db_path=" + backup}).output, "store_id"),
            old_id);
}

TEST(ChstreamctlTest, RestoreChecksTheBackupAndTheTargetFirst) {
  const std::string db = TestDbPath();
  const std::string backup = TestDbPath(".backup");
  const std::string other = TestDbPath(".other");
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    Fill(**store, 1, 10);
  }
  WriteFileBytes(backup, std::string(8192, 'x'));
  CtlResult r = RunCtl({"restore", "--from=" + backup, "--db_path=" + db});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("not a chstream database"));

  ASSERT_EQ(RunCtl({"backup", "--db_path=" + db, "--out=" + backup, "--force"})
                .exit_code,
            0);
  WriteFileBytes(other, "not a database at all, keep me");
  r = RunCtl({"restore", "--from=" + backup, "--db_path=" + other});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ReadFileBytes(other), "not a database at all, keep me");

  // A missing target is fine.
  const std::string fresh = TestDbPath(".fresh");
  r = RunCtl({"restore", "--from=" + backup, "--db_path=" + fresh});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(RunCtl({"check", "--db_path=" + fresh}).exit_code, 0);
}

TEST(ChstreamctlTest, CheckReportsCountsAndFailsOnCorruption) {
  const std::string db = TestDbPath();
  std::string id;
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    Fill(**store, 1, 2000);
    Batch batch;
    batch.dead_letters.push_back(MakeDeadLetter("companies", "bad json"));
    ASSERT_TRUE((*store)->Commit(std::move(batch), TestTime()).ok());
    id = (*store)->store_id();
  }
  CtlResult r = RunCtl({"check", "--db_path=" + db});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(Field(r.output, "integrity_check"), "ok");
  EXPECT_EQ(Field(r.output, "events"), "2000");
  EXPECT_EQ(Field(r.output, "head_position"), "2000");
  EXPECT_EQ(Field(r.output, "oldest_position"), "1");
  EXPECT_EQ(Field(r.output, "companies"), "400");
  EXPECT_EQ(Field(r.output, "dead_letters"), "1");
  EXPECT_EQ(Field(r.output, "store_id"), id);
  EXPECT_EQ(Field(r.output, "status"), "OK");

  // Garbage over pages in the middle of the file (not the header).
  std::string bytes = ReadFileBytes(db);
  ASSERT_GT(bytes.size(), 200000u);
  for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 65536; ++i) {
    bytes[i] = static_cast<char>(i * 7);
  }
  WriteFileBytes(db, bytes);
  r = RunCtl({"check", "--db_path=" + db});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("NOT OK"));
  EXPECT_THAT(r.output, HasSubstr("integrity_check failed"));

  r = RunCtl({"check", "--db_path=" + TestDbPath(".missing")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("does not exist"));
}

TEST(ChstreamctlTest, DeadLettersListsNewestFirstTruncated) {
  const std::string db = TestDbPath();
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 3; ++i) {
      Batch batch;
      storage::DeadLetter d =
          MakeDeadLetter("filing-history", absl::StrCat("reason ", i));
      d.received_at = TestTime(i * 1000000);
      d.raw = absl::StrCat("{\"line\":", i, ",\"pad\":\"",
                           std::string(500, 'p'), "\"}\n");
      d.timepoint = 40 + i;
      batch.dead_letters.push_back(d);
      ASSERT_TRUE((*store)->Commit(std::move(batch), TestTime()).ok());
    }
  }
  CtlResult r =
      RunCtl({"dead-letters", "--db_path=" + db, "--limit=2", "--width=20"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const size_t newest = r.output.find("reason 2");
  const size_t next = r.output.find("reason 1");
  EXPECT_NE(newest, std::string::npos) << r.output;
  EXPECT_NE(next, std::string::npos) << r.output;
  EXPECT_LT(newest, next);
  EXPECT_THAT(r.output, Not(HasSubstr("reason 0")));
  EXPECT_THAT(r.output, HasSubstr("2026-11-28T12:00:02.000000Z"));
  EXPECT_THAT(r.output, HasSubstr("filing-history  42"));
  EXPECT_THAT(r.output, HasSubstr("\"{\\\"line\\\":2,\\\"pad\\\":\\\"ppp"));
  EXPECT_THAT(r.output, HasSubstr("\"... (520 bytes)"));
  EXPECT_THAT(r.output, Not(HasSubstr(std::string(30, 'p'))));
}

}  // namespace
}  // namespace chstream
