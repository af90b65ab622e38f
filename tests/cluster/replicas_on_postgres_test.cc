// The cluster parts together on a real PostgreSQL 15 with two
// PostgresStores (two replicas in one process): leader election fences the
// leader's commits; the follower's CommitListener + FollowerFeed publish the
// leader's commits to its hub once each, in order; after a takeover the old
// leader's commit is refused by the fence, the new leader resumes from the
// stored timepoint + 1 (re-sent events dropped as duplicates), and the
// subscriber on the survivor sees every position once, with no gap, across
// the switch from the feed to its own commits.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "cluster/commit_listener.h"
#include "cluster/leader_election.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/follower_feed.h"
#include "server/subscription_hub.h"
#include "storage/postgres/postgres_store.h"
#include "tests/storage/test_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/postgres_server.h"

namespace chstream::cluster {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::SharedPostgresServer;
using ::chstream::testing::StatusIs;
using ::chstream::testing::WaitUntil;
using storage::testing::MakeEvent;
using storage::testing::TestTime;
using ::testing::HasSubstr;

constexpr server::QueueLimits kUnbounded{.events = 1 << 20, .bytes = 1 << 30};

storage::Batch Companies(int64_t first, int64_t last) {
  storage::Batch batch;
  for (int64_t t = first; t <= last; ++t) {
    batch.events.push_back(MakeEvent("companies", t));
  }
  return batch;
}

TEST(ReplicasOnPostgresTest, FollowerFanOutAndFencedFailoverWithoutGap) {
  ASSERT_OK_AND_ASSIGN(auto* pg, SharedPostgresServer());
  ASSERT_OK_AND_ASSIGN(const std::string uri, pg->CreateDatabase());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::PostgresStore> a,
                       storage::PostgresStore::Open(uri));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::PostgresStore> b,
                       storage::PostgresStore::Open(uri));
  EXPECT_EQ(a->store_id(), b->store_id());

  LeaderElection elect_a(
      {.url = uri, .replica_id = "a"},
      {.on_elected = [&](int64_t e) { a->SetFencingEpoch(e); },
       .on_lost = nullptr});
  LeaderElection elect_b(
      {.url = uri, .replica_id = "b"},
      {.on_elected = [&](int64_t e) { b->SetFencingEpoch(e); },
       .on_lost = nullptr});
  ASSERT_THAT(elect_a.Poll(), IsOk());
  ASSERT_THAT(elect_b.Poll(), IsOk());
  ASSERT_TRUE(elect_a.state().leader);
  ASSERT_EQ(a->fencing_epoch(), 1);

  // Follower b: LISTEN -> feed -> hub, with a live subscriber.
  server::SubscriptionHub hub;
  auto sub = hub.Register({}, kUnbounded, [] {});
  server::FollowerFeed feed(
      [&](uint64_t after, uint64_t up_to, size_t n) {
        if (b->HeadPosition() < up_to) {
          absl::StatusOr<uint64_t> head = b->RefreshHeadPosition();
          if (!head.ok()) return absl::StatusOr<storage::Page>(head.status());
        }
        return b->ReadPage(after, up_to, storage::Filter{}, n, n);
      },
      &hub, b->HeadPosition(), {.page_events = 50});
  feed.Start();
  CommitListener listener({.url = uri, .replica_id = "b"},
                          [&](uint64_t head) { feed.NotifyHead(head); });
  listener.Start();

  // The leader commits 200 events in 20 transactions.
  for (int64_t t = 1; t <= 200; t += 10) {
    ASSERT_THAT(a->Commit(Companies(t, t + 9), TestTime()), IsOk());
  }
  ASSERT_TRUE(WaitUntil([&] { return feed.stats().published_through == 200; },
                        absl::Seconds(30)));

  // a's election session dies (as when its host vanishes): b takes over.
  ASSERT_THAT(pg->Execute(uri, absl::StrCat("SELECT pg_terminate_backend(",
                                            elect_a.backend_pid(), ")")),
              IsOk());
  ASSERT_TRUE(WaitUntil(
      [&] {
        EXPECT_THAT(elect_b.Poll(), IsOk());
        return elect_b.state().leader;
      },
      absl::Seconds(30)));
  EXPECT_EQ(b->fencing_epoch(), 2);

  // a has not noticed yet and commits: the fence refuses it, nothing is
  // stored.
  EXPECT_THAT(
      a->Commit(Companies(201, 205), TestTime()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));

  // b leads: its feed stops before its own commits reach the hub (one
  // publisher at a time), then it resumes from the stored timepoint + 1.
  listener.Stop();
  feed.Stop();
  ASSERT_OK_AND_ASSIGN(std::vector<storage::StreamState> states,
                       b->LoadStreamStates());
  ASSERT_EQ(states.size(), 1u);
  ASSERT_EQ(states[0].last_timepoint.value_or(0), 200);
  ASSERT_OK_AND_ASSIGN(uint64_t head, b->RefreshHeadPosition());
  ASSERT_EQ(head, 200u);
  // The upstream re-sends a few events before the resume point: dropped.
  ASSERT_OK_AND_ASSIGN(storage::CommitResult resent,
                       b->Commit(Companies(195, 210), TestTime()));
  hub.Publish(resent.events);  // what the writer's commit callback does
  EXPECT_EQ(resent.events->size(), 10u);
  ASSERT_OK_AND_ASSIGN(storage::CommitResult more,
                       b->Commit(Companies(211, 300), TestTime()));
  hub.Publish(more.events);
  EXPECT_EQ(b->HeadPosition(), 300u);

  // The subscriber on the survivor: 1..300 once each, in order.
  std::vector<uint64_t> positions;
  server::Subscription::Item item;
  while (sub->Pop(&item)) positions.push_back(item.event->position);
  ASSERT_EQ(positions.size(), 300u);
  for (size_t i = 0; i < positions.size(); ++i) {
    ASSERT_EQ(positions[i], i + 1) << "at " << i;
  }
  // Stored: positions dense, one event per timepoint 1..300.
  ASSERT_OK_AND_ASSIGN(storage::Page page,
                       b->ReadPage(0, 1000, storage::Filter{}, 1000, 1000));
  ASSERT_EQ(page.events.size(), 300u);
  for (size_t i = 0; i < page.events.size(); ++i) {
    EXPECT_EQ(page.events[i].position, i + 1);
    EXPECT_EQ(page.events[i].timepoint, static_cast<int64_t>(i + 1));
  }
  EXPECT_EQ(pg->QueryValue(uri, "SELECT leader_id FROM cluster").value_or(""),
            "b");
  // a finds out at its next poll and follows.
  EXPECT_FALSE(elect_a.Poll().ok());
  EXPECT_THAT(elect_a.Poll(), IsOk());
  EXPECT_FALSE(elect_a.state().leader);
  EXPECT_EQ(elect_a.state().leader_id, "b");
}

}  // namespace
}  // namespace chstream::cluster
