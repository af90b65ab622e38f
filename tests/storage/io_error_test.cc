// Commits that fail with a real SQLite I/O error (SQLITE_IOERR_WRITE from
// the operating-system layer, as a failing disk gives), injected below
// SQLite by a VFS that forwards to the default one and fails writes to the
// write-ahead log while armed. The writer must report the error, retry the
// same batch, and lose nothing once writes work again; the database must
// reopen with every event.
#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/event_writer.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::TestDbPath;
using ::chstream::storage::testing::TestTime;
using ::chstream::storage::testing::WaitUntil;
using ::chstream::testing::IsOk;

// The default VFS with writes to WAL files failing while `fail_wal_writes`
// is set. Registered as the process's default VFS, so that every
// connection the store opens uses it.
class FaultyVfs {
 public:
  static void Install() {
    static FaultyVfs* const vfs = new FaultyVfs;
    ASSERT_EQ(sqlite3_vfs_register(&vfs->vfs_, /*makeDflt=*/1), SQLITE_OK);
  }
  static std::atomic<bool> fail_wal_writes;
  static std::atomic<int> failed_writes;

 private:
  // Our file: the methods below, then the default VFS's file.
  struct File {
    sqlite3_file base;
    bool is_wal;
    sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
  };
  static File* Of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }

  FaultyVfs() {
    real_ = sqlite3_vfs_find(nullptr);
    vfs_ = *real_;
    vfs_.zName = "chstream-faulty";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
    vfs_.pAppData = this;
    vfs_.xOpen = &Open;
    methods_.iVersion = 3;
    methods_.xClose = [](sqlite3_file* f) {
      return Of(f)->real()->pMethods->xClose(Of(f)->real());
    };
    methods_.xRead = [](sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
      return Of(f)->real()->pMethods->xRead(Of(f)->real(), p, n, off);
    };
    methods_.xWrite = [](sqlite3_file* f, const void* p, int n,
                         sqlite3_int64 off) {
      if (Of(f)->is_wal && fail_wal_writes.load()) {
        failed_writes.fetch_add(1);
        return SQLITE_IOERR_WRITE;
      }
      return Of(f)->real()->pMethods->xWrite(Of(f)->real(), p, n, off);
    };
    methods_.xTruncate = [](sqlite3_file* f, sqlite3_int64 size) {
      return Of(f)->real()->pMethods->xTruncate(Of(f)->real(), size);
    };
    methods_.xSync = [](sqlite3_file* f, int flags) {
      return Of(f)->real()->pMethods->xSync(Of(f)->real(), flags);
    };
    methods_.xFileSize = [](sqlite3_file* f, sqlite3_int64* size) {
      return Of(f)->real()->pMethods->xFileSize(Of(f)->real(), size);
    };
    methods_.xLock = [](sqlite3_file* f, int lock) {
      return Of(f)->real()->pMethods->xLock(Of(f)->real(), lock);
    };
    methods_.xUnlock = [](sqlite3_file* f, int lock) {
      return Of(f)->real()->pMethods->xUnlock(Of(f)->real(), lock);
    };
    methods_.xCheckReservedLock = [](sqlite3_file* f, int* out) {
      return Of(f)->real()->pMethods->xCheckReservedLock(Of(f)->real(), out);
    };
    methods_.xFileControl = [](sqlite3_file* f, int op, void* arg) {
      return Of(f)->real()->pMethods->xFileControl(Of(f)->real(), op, arg);
    };
    methods_.xSectorSize = [](sqlite3_file* f) {
      return Of(f)->real()->pMethods->xSectorSize(Of(f)->real());
    };
    methods_.xDeviceCharacteristics = [](sqlite3_file* f) {
      return Of(f)->real()->pMethods->xDeviceCharacteristics(Of(f)->real());
    };
    methods_.xShmMap = [](sqlite3_file* f, int region, int size, int extend,
                          void volatile** out) {
      return Of(f)->real()->pMethods->xShmMap(Of(f)->real(), region, size,
                                              extend, out);
    };
    methods_.xShmLock = [](sqlite3_file* f, int offset, int n, int flags) {
      return Of(f)->real()->pMethods->xShmLock(Of(f)->real(), offset, n, flags);
    };
    methods_.xShmBarrier = [](sqlite3_file* f) {
      Of(f)->real()->pMethods->xShmBarrier(Of(f)->real());
    };
    methods_.xShmUnmap = [](sqlite3_file* f, int del) {
      return Of(f)->real()->pMethods->xShmUnmap(Of(f)->real(), del);
    };
    methods_.xFetch = [](sqlite3_file* f, sqlite3_int64 off, int n,
                         void** out) {
      return Of(f)->real()->pMethods->xFetch(Of(f)->real(), off, n, out);
    };
    methods_.xUnfetch = [](sqlite3_file* f, sqlite3_int64 off, void* p) {
      return Of(f)->real()->pMethods->xUnfetch(Of(f)->real(), off, p);
    };
  }

  static int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f,
                  int flags, int* out_flags) {
    auto* self = static_cast<FaultyVfs*>(vfs->pAppData);
    File* file = Of(f);
    file->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    std::memset(file->real(), 0, self->real_->szOsFile);
    const int rc =
        self->real_->xOpen(self->real_, name, file->real(), flags, out_flags);
    // SQLite calls xClose only when pMethods is set: set it only when the
    // real file is open.
    file->base.pMethods =
        file->real()->pMethods != nullptr ? &self->methods_ : nullptr;
    return rc;
  }

  sqlite3_vfs* real_;
  sqlite3_vfs vfs_;
  sqlite3_io_methods methods_{};
};

std::atomic<bool> FaultyVfs::fail_wal_writes{false};
std::atomic<int> FaultyVfs::failed_writes{0};

class IoErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FaultyVfs::Install();
    FaultyVfs::fail_wal_writes = false;
    path_ = TestDbPath();
    auto store = Store::Open(path_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }
  void TearDown() override { FaultyVfs::fail_wal_writes = false; }

  FakeClock clock_{TestTime()};
  std::string path_;
  std::unique_ptr<Store> store_;
};

// Verifies that a commit failing with an I/O error is reported with
// SQLite's error, retried with the same batch until writes work again, and
// that every event is then stored once, in order, and still there after a
// reopen.
TEST_F(IoErrorTest, FailedWritesAreRetriedAndNothingIsLost) {
  std::atomic<uint64_t> committed{0};
  EventWriter writer(
      store_.get(), {.max_delay = absl::ZeroDuration()},
      [&](const CommitResult& r) { committed += r.events->size(); }, &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("filings", 1)));
  writer.Flush();
  ASSERT_EQ(committed.load(), 1u);

  FaultyVfs::failed_writes = 0;
  FaultyVfs::fail_wal_writes = true;
  for (int i = 2; i <= 100; ++i) {
    ASSERT_TRUE(writer.Push(MakeEvent("filings", i)));
  }
  ASSERT_TRUE(
      WaitUntil([&] { return writer.Health().consecutive_failures >= 2; }));
  const EventWriter::CommitHealth health = writer.Health();
  EXPECT_THAT(std::string(health.last_error.message()),
              ::testing::HasSubstr("disk I/O error"));
  EXPECT_NE(health.failing_since, absl::InfinitePast());
  EXPECT_GE(FaultyVfs::failed_writes.load(), 2);
  EXPECT_EQ(store_->HeadPosition(), 1u);
  EXPECT_EQ(committed.load(), 1u);

  FaultyVfs::fail_wal_writes = false;
  writer.Flush();
  EXPECT_EQ(writer.Health().consecutive_failures, 0u);
  EXPECT_EQ(committed.load(), 100u);
  const EventWriter::Stats stats = writer.GetStats();
  EXPECT_EQ(stats.items_dropped, 0u);
  EXPECT_EQ(stats.items_isolated, 0u);
  EXPECT_EQ(stats.dead_letters, 0u);
  EXPECT_GE(stats.commit_errors, 2u);
  writer.Stop();

  store_.reset();
  auto reopened = Store::Open(path_);
  ASSERT_THAT(reopened, IsOk());
  EXPECT_EQ((*reopened)->HeadPosition(), 100u);
  auto page = (*reopened)->ReadPage(0, 100, Filter{}, 1000, 1000);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->events.size(), 100u);
  for (size_t i = 0; i < page->events.size(); ++i) {
    EXPECT_EQ(page->events[i].position, i + 1);
    EXPECT_EQ(page->events[i].timepoint, static_cast<int64_t>(i + 1));
  }
}

}  // namespace
}  // namespace chstream::storage
