// Opening a store after a crash while another process is recovering the same
// WAL: chstreamd restarted right after a SIGKILL while the kill test (or an
// operator's sqlite3 shell) reads the file. Store::Open must wait for the
// other process's recovery (up to Options::busy_timeout) instead of failing
// with "database is locked [sqlite 261]" (SQLITE_BUSY_RECOVERY).
#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::FileSize;
using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::TestDbPath;
using ::chstream::storage::testing::TestTime;
using ::chstream::testing::IsOk;

// Byte offsets of SQLite's WAL-index locks in the -shm file (wal.c:
// WALINDEX_LOCK_OFFSET = 120; WAL_WRITE_LOCK 0, WAL_CKPT_LOCK 1,
// WAL_RECOVER_LOCK 2; the DMS lock byte follows the 8 lock bytes).
constexpr off_t kShmWriteLock = 120;
constexpr off_t kShmRecoverLock = 122;
constexpr off_t kShmDmsLock = 128;
// The two copies of the WAL-index header (2 x 48 bytes) that precede them.
constexpr size_t kShmHeaderBytes = 96;

bool Lock(int fd, short type, off_t start, off_t len) {
  struct flock fl = {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return ::fcntl(fd, F_SETLK, &fl) == 0;
}

// Leaves `path` as a killed chstreamd does: committed events in the WAL, the
// WAL and its index never checkpointed or closed.
void CrashWithEventsInWal(const std::string& path, int events) {
  const pid_t pid = ::fork();
  ASSERT_NE(pid, -1) << std::strerror(errno);
  if (pid == 0) {
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
    if (!store.ok()) ::_exit(2);
    Batch batch;
    for (int i = 1; i <= events; ++i) {
      batch.events.push_back(MakeEvent("companies", i));
    }
    if (!(*store)->Commit(std::move(batch), TestTime()).ok()) ::_exit(3);
    ::_exit(0);  // no destructor: nothing is checkpointed or cleaned up
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_GT(FileSize(path + "-wal"), 0u);
}

// A child process that holds the -shm locks SQLite holds while it rebuilds
// the WAL index after a crash (walIndexRecover), with the index header
// invalidated as the recovering process does, until Release().
class RecoveringProcess {
 public:
  explicit RecoveringProcess(const std::string& path) {
    int ready[2], release[2];
    EXPECT_EQ(::pipe(ready), 0);
    EXPECT_EQ(::pipe(release), 0);
    pid_ = ::fork();
    EXPECT_NE(pid_, -1) << std::strerror(errno);
    if (pid_ == 0) {
      ::close(ready[0]);
      ::close(release[1]);
      const int fd = ::open((path + "-shm").c_str(), O_RDWR);
      const char zeros[kShmHeaderBytes] = {};
      const bool ok = fd >= 0 && Lock(fd, F_RDLCK, kShmDmsLock, 1) &&
                      Lock(fd, F_WRLCK, kShmWriteLock,
                           kShmRecoverLock - kShmWriteLock + 1) &&
                      ::pwrite(fd, zeros, sizeof(zeros), 0) ==
                          static_cast<ssize_t>(sizeof(zeros));
      const char byte = ok ? 'y' : 'n';
      if (::write(ready[1], &byte, 1) != 1) ::_exit(1);
      char c;
      while (::read(release[0], &c, 1) > 0) {
      }  // until the parent closes its end
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    release_fd_ = release[1];
    char byte = 'n';
    EXPECT_EQ(::read(ready[0], &byte, 1), 1);
    ::close(ready[0]);
    locked_ = byte == 'y';
  }
  ~RecoveringProcess() { Release(); }

  bool locked() const { return locked_; }

  // Ends the "recovery": the child exits and its locks go with it.
  void Release() {
    if (release_fd_ < 0) return;
    ::close(release_fd_);
    release_fd_ = -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
  bool locked_ = false;
};

// Verifies that Open waits for another process's WAL recovery instead of
// failing at once with SQLITE_BUSY_RECOVERY. Before the fix, the read-only
// connection that inspects the file before opening it had no busy timeout.
TEST(StoreRecoveryTest, OpenWaitsForAnotherProcessRecoveringTheWal) {
  const std::string path = TestDbPath();
  ASSERT_NO_FATAL_FAILURE(CrashWithEventsInWal(path, 3));
  RecoveringProcess other(path);
  ASSERT_TRUE(other.locked());

  absl::StatusOr<std::unique_ptr<Store>> store;
  absl::Notification opened;
  std::thread opener([&] {
    store = Store::Open(path);
    opened.Notify();
  });
  // Open must still be waiting while the other process recovers; a store
  // that fails here failed without waiting (the bug). 300 ms is far longer
  // than the failure takes and far shorter than the busy timeout (5 s).
  if (!opened.WaitForNotificationWithTimeout(absl::Milliseconds(300))) {
    other.Release();
  }
  opener.join();
  ASSERT_THAT(store.status(), IsOk());
  EXPECT_EQ((*store)->HeadPosition(), 3u);
}

// Verifies that Open gives up with Unavailable (not a hang) when another
// process holds the recovery lock for longer than the busy timeout.
TEST(StoreRecoveryTest, OpenGivesUpAfterTheBusyTimeout) {
  const std::string path = TestDbPath();
  ASSERT_NO_FATAL_FAILURE(CrashWithEventsInWal(path, 1));
  RecoveringProcess other(path);
  ASSERT_TRUE(other.locked());
  Store::Options options;
  options.busy_timeout = absl::Milliseconds(50);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path, options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable)
      << store.status();
  other.Release();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> reopened,
                       Store::Open(path, options));
  EXPECT_EQ(reopened->HeadPosition(), 1u);
}

}  // namespace
}  // namespace chstream::storage
