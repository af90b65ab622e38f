// FollowerFeed with the SQLite Store: commits made through another path (as
// the leader's writer would) while heads are notified late, repeatedly, out
// of order or not at all reach the hub once each, in position order, with
// no gap; read errors, overlapping pages and not-yet-visible rows.
#include "server/follower_feed.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/subscription_hub.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace chstream::server {
namespace {

using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using storage::testing::MakeEvent;
using storage::testing::MakeFilter;
using storage::testing::TestDbPath;
using storage::testing::TestTime;
using storage::testing::WaitUntil;

constexpr QueueLimits kUnbounded{.events = 1 << 20, .bytes = 1 << 30};

class FollowerFeedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(store_, storage::Store::Open(TestDbPath()));
  }

  // Commits `n` events alternating companies / filings (data as JSON text).
  void CommitEvents(int n) {
    storage::Batch batch;
    for (int i = 0; i < n; ++i) {
      const bool filing = (next_timepoint_ % 2) == 0;
      storage::Event e =
          MakeEvent(filing ? "filings" : "companies", next_timepoint_++);
      e.data_pb.clear();  // MakeEvent's is not a Struct, which Drain parses
      batch.events.push_back(std::move(e));
    }
    ASSERT_THAT(store_->Commit(std::move(batch), TestTime()), IsOk());
  }

  FollowerFeed::PageReader Reader() {
    return [this](uint64_t after, uint64_t up_to, size_t max_events) {
      return store_->ReadPage(after, up_to, storage::Filter{}, max_events,
                              max_events);
    };
  }

  // The queued events, parsed from the messages the queue holds.
  static std::vector<v1::Event> Drain(Subscription& sub) {
    std::vector<v1::Event> events;
    Subscription::Item item;
    while (sub.Pop(&item)) {
      EXPECT_TRUE(events.emplace_back().ParseFromString(item.event->message));
      EXPECT_EQ(events.back().position(), item.event->position);
    }
    return events;
  }

  std::unique_ptr<storage::Store> store_;
  SubscriptionHub hub_;
  int64_t next_timepoint_ = 1;
};

TEST_F(FollowerFeedTest, ConcurrentCommitsArePublishedOnceInOrder) {
  // Committed before the follower started: subscribers read these from
  // storage, the feed does not publish them.
  CommitEvents(10);
  const uint64_t start = store_->HeadPosition();
  ASSERT_EQ(start, 10u);
  auto all = hub_.Register({}, kUnbounded, [] {});
  auto filings = hub_.Register(MakeFilter({"filings"}), kUnbounded, [] {});

  FollowerFeed feed(Reader(), &hub_, start, {.page_events = 7});
  feed.Start();
  // The "leader": commits batches of 1..5 events on another thread; the
  // heads it notifies are sometimes missing, repeated or stale (as the
  // listener's notifications and safety-net polls can be).
  std::thread leader([&] {
    for (int i = 0; i < 200; ++i) {
      CommitEvents(i % 5 + 1);
      const uint64_t head = store_->HeadPosition();
      if (i % 3 == 1) feed.NotifyHead(head);
      if (i % 3 == 2) {
        feed.NotifyHead(head);
        feed.NotifyHead(head - 3);
        feed.NotifyHead(head);
      }
    }
  });
  leader.join();
  const uint64_t head = store_->HeadPosition();
  ASSERT_EQ(head, start + 600);  // 200 batches of 3 on average
  feed.NotifyHead(head);
  ASSERT_TRUE(WaitUntil([&] { return feed.stats().published_through == head; },
                        absl::Seconds(30)));
  feed.Stop();

  const std::vector<v1::Event> events = Drain(*all);
  ASSERT_EQ(events.size(), head - start);
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].position(), start + 1 + i) << "at " << i;
  }
  const std::vector<v1::Event> filed = Drain(*filings);
  EXPECT_EQ(filed.size(), 300u);
  for (size_t i = 0; i < filed.size(); ++i) {
    EXPECT_EQ(filed[i].stream(), "filings");
    if (i > 0) {
      EXPECT_GT(filed[i].position(), filed[i - 1].position());
    }
  }
  const FollowerFeed::Stats stats = feed.stats();
  EXPECT_EQ(stats.events_published, 600u);
  EXPECT_EQ(stats.read_errors, 0u);
  // The hub's idle mark agrees: everything through the head was examined.
  uint64_t through = 0;
  ASSERT_TRUE(all->IdleThrough(&through));
  EXPECT_EQ(through, head);
}

TEST_F(FollowerFeedTest, ReadErrorsAndOverlappingPagesPublishEachPositionOnce) {
  CommitEvents(20);
  auto all = hub_.Register({}, kUnbounded, [] {});
  int calls = 0;
  // Fails the first call; afterwards returns pages that overlap what was
  // already published (from two positions back).
  FollowerFeed feed(
      [&](uint64_t after, uint64_t up_to,
          size_t max_events) -> absl::StatusOr<storage::Page> {
        if (calls++ == 0) return absl::UnavailableError("connection lost");
        return store_->ReadPage(after > 2 ? after - 2 : 0, up_to,
                                storage::Filter{}, max_events, max_events);
      },
      &hub_, 0, {.page_events = 6});
  EXPECT_THAT(feed.CatchUpTo(20), StatusIs(absl::StatusCode::kUnavailable,
                                           ::testing::HasSubstr("lost")));
  EXPECT_EQ(feed.stats().published_through, 0u);
  EXPECT_EQ(feed.stats().read_errors, 1u);
  EXPECT_TRUE(Drain(*all).empty());

  ASSERT_THAT(feed.CatchUpTo(20), IsOk());
  const std::vector<v1::Event> events = Drain(*all);
  ASSERT_EQ(events.size(), 20u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].position(), i + 1);
  }
  // A stale or repeated head publishes nothing.
  ASSERT_THAT(feed.CatchUpTo(20), IsOk());
  ASSERT_THAT(feed.CatchUpTo(5), IsOk());
  EXPECT_TRUE(Drain(*all).empty());
}

TEST_F(FollowerFeedTest, HeadAheadOfVisibleRowsIsReadLater) {
  CommitEvents(3);
  auto all = hub_.Register({}, kUnbounded, [] {});
  FollowerFeed feed(Reader(), &hub_, 0, {});
  // Notified of head 5 while only 3 rows exist (the reader's snapshot is
  // behind): publishes 1..3, returns, and the next call gets the rest.
  ASSERT_THAT(feed.CatchUpTo(5), IsOk());
  EXPECT_EQ(feed.stats().published_through, 3u);
  EXPECT_EQ(Drain(*all).size(), 3u);
  CommitEvents(2);
  ASSERT_THAT(feed.CatchUpTo(5), IsOk());
  const std::vector<v1::Event> events = Drain(*all);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].position(), 4u);
  EXPECT_EQ(events[1].position(), 5u);
}

}  // namespace
}  // namespace chstream::server
