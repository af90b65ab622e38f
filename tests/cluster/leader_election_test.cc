// Leader election against a real PostgreSQL 15: one leader among three
// replicas, takeover with epoch + 1 when the leader's session ends
// (pg_terminate_backend, server restart), fencing of the old epoch.
#include "cluster/leader_election.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres/pg_connection.h"
#include "tests/cluster/cluster_test_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/postgres_server.h"

namespace chstream::cluster {
namespace {

using ::chstream::storage::pg::PgConnection;
using ::chstream::storage::pg::PgParam;
using ::chstream::storage::pg::PgResult;
using ::chstream::testing::IsOk;
using ::chstream::testing::PostgresServer;
using ::chstream::testing::SharedPostgresServer;
using ::chstream::testing::StatusIs;
using ::chstream::testing::WaitUntil;
using ::testing::HasSubstr;

// Records the callbacks of one elector.
struct Events {
  absl::Mutex mu;
  std::vector<int64_t> elected ABSL_GUARDED_BY(mu);
  std::vector<absl::Status> lost ABSL_GUARDED_BY(mu);

  LeaderElection::Callbacks Callbacks() {
    return {.on_elected =
                [this](int64_t epoch) {
                  absl::MutexLock lock(&mu);
                  elected.push_back(epoch);
                },
            .on_lost =
                [this](const absl::Status& why) {
                  absl::MutexLock lock(&mu);
                  lost.push_back(why);
                }};
  }
  std::vector<int64_t> Elected() {
    absl::MutexLock lock(&mu);
    return elected;
  }
  std::vector<absl::Status> Lost() {
    absl::MutexLock lock(&mu);
    return lost;
  }
};

class LeaderElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, SharedPostgresServer());
    ASSERT_OK_AND_ASSIGN(uri_, testing::NewClusterDatabase(server_));
  }

  std::unique_ptr<LeaderElection> Elector(
      const std::string& id, Events* events,
      absl::Duration interval = absl::Seconds(2)) {
    return std::make_unique<LeaderElection>(
        LeaderElection::Options{
            .url = uri_, .replica_id = id, .poll_interval = interval},
        events->Callbacks());
  }

  std::string Cluster(const std::string& column) {
    return server_->QueryValue(uri_, "SELECT " + column + " FROM cluster")
        .value_or("?");
  }

  PostgresServer* server_ = nullptr;
  std::string uri_;
};

TEST_F(LeaderElectionTest, ExactlyOneOfThreeLeads) {
  Events ea, eb, ec;
  auto a = Elector("a", &ea);
  auto b = Elector("b", &eb);
  auto c = Elector("c", &ec);
  for (int round = 0; round < 3; ++round) {
    ASSERT_THAT(a->Poll(), IsOk());
    ASSERT_THAT(b->Poll(), IsOk());
    ASSERT_THAT(c->Poll(), IsOk());
  }
  EXPECT_TRUE(a->state().leader);
  EXPECT_FALSE(b->state().leader);
  EXPECT_FALSE(c->state().leader);
  EXPECT_EQ(ea.Elected(), std::vector<int64_t>{1});
  EXPECT_TRUE(eb.Elected().empty());
  EXPECT_TRUE(ec.Elected().empty());
  EXPECT_EQ(a->state().epoch, 1);
  EXPECT_EQ(a->state().takeovers, 1u);
  // Followers see who leads.
  EXPECT_EQ(b->state().leader_id, "a");
  EXPECT_EQ(c->state().epoch, 1);
  EXPECT_EQ(Cluster("leader_id"), "a");
  EXPECT_EQ(Cluster("leader_epoch"), "1");
  EXPECT_NE(Cluster("heartbeat_at"), "");
}

// Verifies a takeover is not blocked by a former leader's session that
// still holds the cluster row (a commit it was running when paused, e.g. a
// COPY waiting for data): the new leader, holding the lock, ends that
// session after the lock timeout and takes over.
TEST_F(LeaderElectionTest, TakeoverEndsAFormerLeadersSessionHoldingTheRow) {
  ASSERT_OK_AND_ASSIGN(PgConnection paused,
                       PgConnection::Connect(uri_, "test:paused"));
  ASSERT_THAT(paused.Exec("BEGIN").status(), IsOk());
  ASSERT_THAT(
      paused.Exec("UPDATE cluster SET head = head WHERE id = 1").status(),
      IsOk());
  Events ea;
  auto a = Elector("a", &ea);
  EXPECT_THAT(a->Poll(), IsOk());
  EXPECT_TRUE(a->state().leader);
  EXPECT_EQ(ea.Elected(), std::vector<int64_t>{1});
  EXPECT_EQ(Cluster("leader_id"), "a");
  // The paused session was ended: its transaction can never commit.
  EXPECT_THAT(paused.Exec("COMMIT").status(),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

TEST_F(LeaderElectionTest, TerminatedLeaderIsReplacedWithTheNextEpoch) {
  Events ea, eb;
  auto a = Elector("a", &ea);
  auto b = Elector("b", &eb);
  ASSERT_THAT(a->Poll(), IsOk());
  ASSERT_THAT(b->Poll(), IsOk());
  ASSERT_TRUE(a->state().leader);
  const int pid = a->backend_pid();
  ASSERT_GT(pid, 0);
  ASSERT_THAT(server_->Execute(
                  uri_, absl::StrCat("SELECT pg_terminate_backend(", pid, ")")),
              IsOk());

  // The lock goes with the session: b takes over with epoch 2.
  ASSERT_TRUE(WaitUntil(
      [&] {
        EXPECT_THAT(b->Poll(), IsOk());
        return b->state().leader;
      },
      absl::Seconds(30)));
  EXPECT_EQ(eb.Elected(), std::vector<int64_t>{2});
  EXPECT_EQ(Cluster("leader_id"), "b");

  // a notices at its next poll, steps down and stays a follower.
  EXPECT_THAT(a->Poll(), StatusIs(absl::StatusCode::kUnavailable,
                                  HasSubstr("connection")));
  EXPECT_THAT(a->Poll(), IsOk());
  EXPECT_FALSE(a->state().leader);
  EXPECT_EQ(a->state().leader_id, "b");
  EXPECT_EQ(a->state().epoch, 2);
  ASSERT_EQ(ea.Lost().size(), 1u);
  EXPECT_EQ(ea.Lost()[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ea.Elected(), std::vector<int64_t>{1});
}

TEST_F(LeaderElectionTest, StaleEpochIsFencedAndAFencedLeaderStepsDown) {
  Events ea, eb;
  auto a = Elector("a", &ea);
  auto b = Elector("b", &eb);
  ASSERT_THAT(a->Poll(), IsOk());
  ASSERT_EQ(a->state().epoch, 1);
  ASSERT_OK_AND_ASSIGN(PgConnection writer,
                       PgConnection::Connect(uri_, "test:writer"));
  // A commit-like statement, fenced by epoch, as the store's commit is.
  const auto commit_with = [&](int64_t epoch) {
    absl::StatusOr<PgResult> r = writer.Query(
        "UPDATE cluster SET head = head + 1 WHERE id = 1 AND "
        "leader_epoch = $1",
        {PgParam::Int(epoch)});
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->AffectedRows() : -1;
  };
  EXPECT_EQ(commit_with(1), 1);

  // Someone else took over (as a takeover after a pause would): epoch 2.
  ASSERT_THAT(server_->Execute(uri_,
                               "UPDATE cluster SET leader_epoch = "
                               "leader_epoch + 1, leader_id = 'x'"),
              IsOk());
  EXPECT_EQ(commit_with(1), 0);  // the old leader's commit is refused
  EXPECT_EQ(commit_with(2), 1);
  EXPECT_EQ(Cluster("head"), "2");

  // The old leader finds out at its next heartbeat, steps down and drops
  // the lock, so another replica can lead with a newer epoch.
  EXPECT_THAT(a->Poll(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                  HasSubstr("fenced")));
  EXPECT_FALSE(a->state().leader);
  ASSERT_EQ(ea.Lost().size(), 1u);
  EXPECT_THAT(ea.Lost()[0].message(), HasSubstr("fenced"));
  ASSERT_THAT(b->Poll(), IsOk());
  EXPECT_TRUE(b->state().leader);
  EXPECT_EQ(eb.Elected(), std::vector<int64_t>{3});
  EXPECT_EQ(commit_with(2), 0);
}

TEST_F(LeaderElectionTest, RequestedStepDownReleasesTheLock) {
  Events ea, eb;
  auto a = Elector("a", &ea);
  auto b = Elector("b", &eb);
  ASSERT_THAT(a->Poll(), IsOk());
  ASSERT_THAT(b->Poll(), IsOk());
  // Not leading: nothing happens.
  b->RequestStepDown(absl::FailedPreconditionError("fenced: no"));
  EXPECT_THAT(b->Poll(), IsOk());
  EXPECT_TRUE(eb.Lost().empty());

  // The writer's commit was refused by the fence.
  a->RequestStepDown(absl::FailedPreconditionError("fenced: commit refused"));
  EXPECT_THAT(a->Poll(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                  HasSubstr("commit refused")));
  EXPECT_FALSE(a->state().leader);
  ASSERT_EQ(ea.Lost().size(), 1u);
  EXPECT_THAT(ea.Lost()[0].message(), HasSubstr("commit refused"));
  ASSERT_THAT(b->Poll(), IsOk());
  EXPECT_TRUE(b->state().leader);
  EXPECT_EQ(eb.Elected(), std::vector<int64_t>{2});
  // a competes again as a follower.
  ASSERT_THAT(a->Poll(), IsOk());
  EXPECT_FALSE(a->state().leader);
  EXPECT_EQ(a->state().leader_id, "b");
}

TEST_F(LeaderElectionTest, ElectorThreadStepsDownAtOnceWhenAsked) {
  Events ea, eb;
  // Polls every hour: only RequestStepDown can make it act in time.
  auto a = Elector("a", &ea, absl::Hours(1));
  a->Start();
  ASSERT_TRUE(WaitUntil([&] { return a->state().leader; }, absl::Seconds(30)));
  a->RequestStepDown(absl::FailedPreconditionError("fenced: commit refused"));
  ASSERT_TRUE(WaitUntil([&] { return !ea.Lost().empty(); }, absl::Seconds(30)));
  auto b = Elector("b", &eb);
  ASSERT_TRUE(WaitUntil(
      [&] {
        EXPECT_THAT(b->Poll(), IsOk());
        return b->state().leader;
      },
      absl::Seconds(30)));
  a->Stop();
}

TEST_F(LeaderElectionTest, ElectorThreadsFailOverAcrossAServerRestart) {
  Events ea, eb;
  auto a = Elector("a", &ea, absl::Milliseconds(20));
  auto b = Elector("b", &eb, absl::Milliseconds(20));
  a->Start();
  b->Start();
  const auto leaders = [&] {
    return int{a->state().leader} + int{b->state().leader};
  };
  ASSERT_TRUE(WaitUntil([&] { return leaders() == 1; }, absl::Seconds(30)));
  LeaderElection* first = a->state().leader ? a.get() : b.get();
  Events& first_events = first == a.get() ? ea : eb;

  // Every session ends; after the restart exactly one leads, with epoch 2.
  // (The callbacks run after the state changes: wait for them too.)
  ASSERT_THAT(server_->Restart(), IsOk());
  ASSERT_TRUE(WaitUntil(
      [&] {
        return leaders() == 1 &&
               (a->state().leader ? a : b)->state().epoch == 2 &&
               ea.Elected().size() + eb.Elected().size() == 2 &&
               !first_events.Lost().empty();
      },
      absl::Seconds(60)));
  EXPECT_EQ(first_events.Lost().size(), 1u);
  EXPECT_EQ(ea.Elected().size() + eb.Elected().size(), 2u);
  // The follower first, so that it cannot take over from the leader's Stop.
  LeaderElection* leader = a->state().leader ? a.get() : b.get();
  LeaderElection* follower = leader == a.get() ? b.get() : a.get();
  follower->Stop();
  leader->Stop();
  EXPECT_FALSE(leader->state().leader);
  // Stopping released the lock: a new elector takes it at once.
  Events ec;
  auto c = Elector("c", &ec);
  ASSERT_THAT(c->Poll(), IsOk());
  EXPECT_TRUE(c->state().leader);
  EXPECT_EQ(ec.Elected(), std::vector<int64_t>{3});
}

}  // namespace
}  // namespace chstream::cluster
