// A database that cannot be written (a read-only file, or a read-only
// directory where SQLite cannot create its -wal and -shm files): Store::Open
// and chstreamd refuse it with an error that names the file and says why,
// and the events already in it are all still there afterwards.
//
// Root ignores file modes (through CAP_DAC_OVERRIDE), and tests here
// usually run as root, in Bazel's sandbox as root of a user namespace where
// no other user exists (setresuid to nobody fails there). So the part that
// opens the database runs in a forked child that, when it is root, gives up
// the capabilities that bypass file modes (CAP_DAC_OVERRIDE,
// CAP_DAC_READ_SEARCH, CAP_FOWNER, also from its bounding set so that an
// exec'd chstreamd does not get them back): the root-owned database is then
// read-only to it exactly as to any other owner. The child checks that it
// really cannot open the file for writing before it goes on.
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::CompanyEvent;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kEvents = 5;

struct ChildResult {
  int exit_code = -1;  // 128 + signal if killed by one
  std::string output;  // stdout and stderr
};

// Gives up, for good, the capabilities with which root ignores file modes.
bool DropFileModeOverrides() {
  const int caps[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER};
  for (int cap : caps) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return false;
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return false;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  for (int cap : caps) {
    const uint32_t bit = 1u << (cap % 32);
    data[cap / 32].effective &= ~bit;
    data[cap / 32].permitted &= ~bit;
    data[cap / 32].inheritable &= ~bit;
  }
  return ::syscall(SYS_capset, &header, data) == 0;
}

// Forks; the child sends stdout and stderr to a pipe, gives up root's file
// mode overrides if it is root, checks that it cannot write `read_only`, and
// exits with what `body` returns. Kills it after 60 s.
ChildResult RunUnprivileged(const std::string& read_only,
                            const std::function<int()>& body) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
    if (::geteuid() == 0 && !DropFileModeOverrides()) {
      std::perror("cannot drop root's file mode overrides");
      ::_exit(120);
    }
    const int fd =
        ::open(read_only.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      std::printf("%s is still writable\n", read_only.c_str());
      ::_exit(123);
    }
    const int code = body();
    std::fflush(nullptr);
    ::_exit(code);
  }
  ::close(fds[1]);
  ChildResult result;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  char buf[4096];
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    const int left =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left <= 0 || ::poll(&p, 1, left) <= 0) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << "the child did not finish within 60 s";
      break;
    }
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

class ReadOnlyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = absl::StrCat(
        std::getenv("TEST_TMPDIR"), "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(base_);
    std::filesystem::create_directories(base_);
    dir_ = base_ + "/db";
    path_ = dir_ + "/chstream.db";
    ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
    // A database with events, closed cleanly (no -wal or -shm left).
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    Batch batch;
    for (int i = 0; i < kEvents; ++i) {
      batch.events.push_back(
          CompanyEvent(100 + i, absl::StrCat("SC00000", i), "KIOSK LTD"));
    }
    ASSERT_TRUE((*store)->Commit(std::move(batch), absl::Now()).ok());
    store_id_ = (*store)->store_id();
  }

  void TearDown() override {
    // Writable again, so that everything can be removed.
    ::chmod(dir_.c_str(), 0755);
    ::chmod(path_.c_str(), 0644);
  }

  // Every event is still there, under the same store_id, once the files are
  // writable again.
  void ExpectNothingLost() {
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->HeadPosition(), static_cast<uint64_t>(kEvents));
    absl::StatusOr<Page> page =
        (*store)->ReadPage(0, (*store)->HeadPosition(), Filter(), 100);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_EQ(page->events.size(), static_cast<size_t>(kEvents));
    EXPECT_EQ((*store)->store_id(), store_id_);
  }

  // Store::Open in an unprivileged child: "opened" or the error.
  ChildResult OpenUnprivileged() {
    const std::string path = path_;
    return RunUnprivileged(read_only_, [path] {
      absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
      if (store.ok()) {
        std::printf("opened\n");
        return 0;
      }
      std::printf("%s\n", store.status().ToString().c_str());
      return 1;
    });
  }

  // chstreamd (from the test's runfiles) in an unprivileged child.
  ChildResult ChstreamdUnprivileged() {
    const int exe = ::open("server/chstreamd", O_RDONLY | O_CLOEXEC);
    EXPECT_GE(exe, 0) << "server/chstreamd not in the runfiles";
    const std::string db_flag = "--db_path=" + path_;
    const std::string dir = dir_;
    ChildResult r = RunUnprivileged(read_only_, [exe, db_flag, dir] {
      if (::chdir(dir.c_str()) != 0) return 121;
      std::vector<std::string> args = {"chstreamd", "--simulate", db_flag,
                                       "--grpc_address=127.0.0.1:0",
                                       "--metrics_address=127.0.0.1:0"};
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      char path_env[] = "PATH=/usr/bin:/bin";
      char tz_env[] = "TZ=UTC";
      char* envp[] = {path_env, tz_env, nullptr};
      ::fexecve(exe, argv.data(), envp);
      std::perror("fexecve");
      return 122;
    });
    ::close(exe);
    return r;
  }

  std::string base_;
  std::string dir_;
  std::string path_;
  std::string store_id_;
  std::string read_only_;  // what the child must not be able to write
};

TEST_F(ReadOnlyStoreTest, ReadOnlyFileIsRefusedNamingItAndLosesNothing) {
  ASSERT_EQ(::chmod(path_.c_str(), 0444), 0);
  read_only_ = path_;
  const ChildResult r = OpenUnprivileged();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr(path_), HasSubstr("readonly"),
                              Not(HasSubstr("opened"))));
  ExpectNothingLost();
}

TEST_F(ReadOnlyStoreTest, ReadOnlyDirectoryIsRefusedNamingItAndLosesNothing) {
  // The file is writable, but SQLite cannot create its -wal and -shm files.
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0555), 0);
  read_only_ = dir_ + "/probe";  // cannot be created
  const ChildResult r = OpenUnprivileged();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output,
              AllOf(HasSubstr(path_), HasSubstr("readonly"),
                    HasSubstr("left untouched"), Not(HasSubstr("opened"))));
  ExpectNothingLost();
}

TEST_F(ReadOnlyStoreTest, ChstreamdExitsWithAClearErrorOnAReadOnlyDatabase) {
  ASSERT_EQ(::chmod(path_.c_str(), 0444), 0);
  read_only_ = path_;
  const ChildResult r = ChstreamdUnprivileged();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(r.exit_code, 120) << r.output;  // not the harness's own codes
  EXPECT_THAT(r.output, AllOf(HasSubstr(path_), HasSubstr("readonly")));
  ExpectNothingLost();
}

}  // namespace
}  // namespace chstream::storage
