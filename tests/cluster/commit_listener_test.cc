// The commit listener against a real PostgreSQL 15: a NOTIFY from another
// connection reaches on_head; a listener whose session is terminated
// reconnects and reports the head committed meanwhile (whose notification
// it missed); the safety-net poll reports a head without any NOTIFY.
#include "cluster/commit_listener.h"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cluster/cluster_test_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/postgres_server.h"

namespace chstream::cluster {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::PostgresServer;
using ::chstream::testing::SharedPostgresServer;
using ::chstream::testing::WaitUntil;

class Heads {
 public:
  std::function<void(uint64_t)> Callback() {
    return [this](uint64_t head) {
      absl::MutexLock lock(&mu_);
      heads_.push_back(head);
    };
  }
  uint64_t Max() {
    absl::MutexLock lock(&mu_);
    return heads_.empty() ? 0 : *std::max_element(heads_.begin(), heads_.end());
  }
  size_t Count() {
    absl::MutexLock lock(&mu_);
    return heads_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> heads_ ABSL_GUARDED_BY(mu_);
};

class CommitListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, SharedPostgresServer());
    ASSERT_OK_AND_ASSIGN(uri_, testing::NewClusterDatabase(server_));
  }

  // What the leader's commit transaction does.
  absl::Status Commit(uint64_t head, bool notify) {
    return server_->Execute(
        uri_, absl::StrCat("BEGIN; UPDATE cluster SET head = ", head, "; ",
                           notify ? absl::StrCat("NOTIFY ", kCommitChannel,
                                                 ", '", head, "'; ")
                                  : "",
                           "COMMIT"));
  }

  PostgresServer* server_ = nullptr;
  std::string uri_;
};

TEST_F(CommitListenerTest, NotificationsAndReconnectReportTheHead) {
  Heads heads;
  // No safety-net poll during the test: heads come from notifications and
  // from the read after each connect only.
  CommitListener listener({.url = uri_,
                           .replica_id = "f1",
                           .poll_interval = absl::Hours(1),
                           .min_backoff = absl::Milliseconds(10)},
                          heads.Callback());
  listener.Start();
  // Connected: the initial read reports head 0.
  ASSERT_TRUE(WaitUntil([&] { return heads.Count() >= 1; }, absl::Seconds(30)));
  EXPECT_EQ(heads.Max(), 0u);
  EXPECT_EQ(listener.stats().connects, 1u);

  ASSERT_THAT(Commit(5, /*notify=*/true), IsOk());
  ASSERT_TRUE(WaitUntil([&] { return heads.Max() == 5; }, absl::Seconds(30)));
  ASSERT_THAT(Commit(7, /*notify=*/true), IsOk());
  ASSERT_TRUE(WaitUntil([&] { return heads.Max() == 7; }, absl::Seconds(30)));
  EXPECT_EQ(listener.stats().notifications, 2u);
  EXPECT_EQ(listener.stats().connects, 1u);

  // A commit whose notification is lost (none is sent), then the LISTEN
  // session is terminated: the listener reconnects and reads the head. (The
  // commit comes first: made after the termination, it could land after
  // the reconnect's read, and nothing would report it within the test.)
  ASSERT_THAT(Commit(9, /*notify=*/false), IsOk());
  const int pid = listener.backend_pid();
  ASSERT_GT(pid, 0);
  ASSERT_THAT(server_->Execute(
                  uri_, absl::StrCat("SELECT pg_terminate_backend(", pid, ")")),
              IsOk());
  ASSERT_TRUE(WaitUntil([&] { return heads.Max() == 9; }, absl::Seconds(30)));
  EXPECT_EQ(listener.stats().connects, 2u);
  EXPECT_NE(listener.backend_pid(), pid);

  // And LISTENs again.
  ASSERT_THAT(Commit(12, /*notify=*/true), IsOk());
  ASSERT_TRUE(WaitUntil([&] { return heads.Max() == 12; }, absl::Seconds(30)));
  EXPECT_EQ(listener.stats().notifications, 3u);
  listener.Stop();
}

TEST_F(CommitListenerTest, SafetyNetPollReportsAHeadWithoutNotify) {
  Heads heads;
  CommitListener listener({.url = uri_,
                           .replica_id = "f2",
                           .poll_interval = absl::Milliseconds(20)},
                          heads.Callback());
  listener.Start();
  ASSERT_TRUE(WaitUntil([&] { return heads.Count() >= 1; }, absl::Seconds(30)));
  ASSERT_THAT(Commit(3, /*notify=*/false), IsOk());
  ASSERT_TRUE(WaitUntil([&] { return heads.Max() == 3; }, absl::Seconds(30)));
  EXPECT_EQ(listener.stats().notifications, 0u);
  EXPECT_GE(listener.stats().polls, 2u);
  listener.Stop();
}

TEST_F(CommitListenerTest, RetriesUntilTheDatabaseIsReachable) {
  Heads heads;
  // A database that does not exist yet: connecting fails until it does.
  const std::string name = absl::StrCat("late_", ::getpid());
  const std::string uri = server_->Uri(name);
  CommitListener listener({.url = uri,
                           .replica_id = "f3",
                           .min_backoff = absl::Milliseconds(10),
                           .max_backoff = absl::Milliseconds(50)},
                          heads.Callback());
  listener.Start();
  ASSERT_TRUE(WaitUntil([&] { return !listener.stats().last_error.ok(); },
                        absl::Seconds(30)));
  EXPECT_FALSE(listener.stats().connected);
  ASSERT_THAT(server_->Execute(server_->Uri(), "CREATE DATABASE " + name),
              IsOk());
  ASSERT_THAT(server_->Execute(uri, testing::kClusterTableSql), IsOk());
  ASSERT_THAT(server_->Execute(uri, "UPDATE cluster SET head = 4"), IsOk());
  ASSERT_TRUE(WaitUntil([&] { return heads.Max() == 4; }, absl::Seconds(30)));
  EXPECT_TRUE(listener.stats().connected);
  listener.Stop();
}

}  // namespace
}  // namespace chstream::cluster
