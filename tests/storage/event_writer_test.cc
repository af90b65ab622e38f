#include "storage/event_writer.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sqlite.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::MakeDeadLetter;
using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::TestDbPath;
using ::chstream::storage::testing::TestTime;
using ::chstream::storage::testing::WaitUntil;
using ::chstream::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records every commit the writer reports.
class CommitLog {
 public:
  EventWriter::CommitCallback Callback() {
    return [this](const CommitResult& r) {
      absl::MutexLock lock(&mu_);
      std::vector<uint64_t> positions;
      for (const Event& e : *r.events) positions.push_back(e.position);
      batches_.push_back(std::move(positions));
    };
  }
  std::vector<std::vector<uint64_t>> batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  std::vector<uint64_t> positions() const {
    absl::MutexLock lock(&mu_);
    std::vector<uint64_t> all;
    for (const auto& b : batches_) all.insert(all.end(), b.begin(), b.end());
    return all;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::vector<uint64_t>> batches_ ABSL_GUARDED_BY(mu_);
};

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t p = first; p <= last; ++p) out.push_back(p);
  return out;
}

class EventWriterTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenStore(Store::Options()); }

  void OpenStore(const Store::Options& options) {
    path_ = TestDbPath();
    auto store = Store::Open(path_, options);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  std::vector<Event> StoredEvents() {
    auto page =
        store_->ReadPage(0, store_->HeadPosition(), Filter{}, 1 << 20, 1 << 20);
    EXPECT_THAT(page, IsOk());
    return page.ok() ? page->events : std::vector<Event>{};
  }

  FakeClock clock_{TestTime()};
  std::string path_;
  std::unique_ptr<Store> store_;
  CommitLog log_;
};

// Verifies items queued together go into one transaction, of every kind.
TEST_F(EventWriterTest, GroupsQueuedItemsIntoOneCommit) {
  EventWriter writer(store_.get(), {}, log_.Callback(), &clock_);
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(writer.Push(MakeEvent("companies", i)));
  }
  ASSERT_TRUE(writer.Push(MakeDeadLetter("companies", "bad")));
  ASSERT_TRUE(writer.Push(Gap{"filings", 3, TestTime(5)}));
  writer.Start();
  writer.Flush();

  EXPECT_THAT(log_.batches(), ElementsAre(Range(1, 10)));
  EventWriter::Stats stats = writer.GetStats();
  EXPECT_EQ(stats.batches, 1u);
  EXPECT_EQ(stats.events, 10u);
  EXPECT_EQ(stats.dead_letters, 1u);
  EXPECT_EQ(stats.gaps, 1u);
  EXPECT_EQ(stats.queue_depth, 0u);
  EXPECT_EQ(stats.queue_capacity, 16384u);
  EXPECT_EQ(stats.commit_errors, 0u);
  EXPECT_EQ(stats.batch_size_count, 1u);
  EXPECT_EQ(stats.batch_size_sum, 12.0);
  EXPECT_EQ(stats.latency_count, 1u);
  ASSERT_EQ(stats.latency_bucket_counts.size(),
            stats.latency_bucket_bounds_seconds.size() + 1);
  ASSERT_EQ(stats.batch_size_bucket_counts.size(),
            stats.batch_size_bucket_bounds.size() + 1);
  // The fake clock does not move during the commit: latency 0.
  EXPECT_EQ(stats.latency_bucket_counts[0], 1u);

  ASSERT_OK_AND_ASSIGN(auto states, store_->LoadStreamStates());
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].stream, "companies");
  EXPECT_EQ(states[0].updated_at, TestTime());  // stamped by the clock
  EXPECT_EQ(states[1].gaps.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto dead, store_->ReadDeadLetters(5));
  EXPECT_EQ(dead.size(), 1u);
}

TEST_F(EventWriterTest, MaxBatchSplitsTransactionsInOrder) {
  EventWriter writer(store_.get(), {.max_batch = 4}, log_.Callback(), &clock_);
  for (int i = 1; i <= 10; ++i)
    ASSERT_TRUE(writer.Push(MakeEvent("filings", i)));
  writer.Start();
  writer.Flush();
  EXPECT_THAT(log_.batches(),
              ElementsAre(Range(1, 4), Range(5, 8), Range(9, 10)));
  std::vector<Event> stored = StoredEvents();
  ASSERT_EQ(stored.size(), 10u);
  for (size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(stored[i].timepoint, static_cast<int64_t>(i + 1));
  }
}

// Verifies Flush does not wait for max_delay (an hour here).
TEST_F(EventWriterTest, FlushCommitsWithoutWaitingForTheDelay) {
  EventWriter writer(store_.get(), {.max_delay = absl::Hours(1)},
                     log_.Callback(), &clock_);
  writer.Start();
  for (int i = 1; i <= 3; ++i)
    ASSERT_TRUE(writer.Push(MakeEvent("officers", i)));
  writer.Flush();
  EXPECT_EQ(store_->HeadPosition(), 3u);
  EXPECT_EQ(log_.positions(), Range(1, 3));
  // Nothing pending: returns at once.
  writer.Flush();
  EXPECT_EQ(writer.GetStats().queue_depth, 0u);
}

// Verifies the max_delay timer alone commits a partial batch.
TEST_F(EventWriterTest, PartialBatchIsCommittedAfterMaxDelay) {
  EventWriter writer(store_.get(), {.max_delay = absl::Milliseconds(1)},
                     log_.Callback(), &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("charges", 1)));
  // No Flush: only the timer can trigger this commit (the callback runs
  // after the head moves, so wait for the callback).
  EXPECT_TRUE(WaitUntil([&] { return !log_.positions().empty(); }));
  EXPECT_EQ(log_.positions(), Range(1, 1));
  EXPECT_EQ(store_->HeadPosition(), 1u);
}

// Verifies the default group commit waits only for the writer: a lone event
// is committed without a Flush and without a delay, and what arrives while
// a commit runs is committed next, as one batch.
TEST_F(EventWriterTest, DefaultCommitsAtOnceAndBatchesWhatArrivedMeanwhile) {
  EXPECT_EQ(EventWriter::Options().max_delay, absl::ZeroDuration());
  absl::Notification first_commit_running, release_first_commit;
  EventWriter::CommitCallback record = log_.Callback();
  EventWriter writer(
      store_.get(), {},
      [&](const CommitResult& r) {
        record(r);
        if (!first_commit_running.HasBeenNotified()) {
          first_commit_running.Notify();
          release_first_commit.WaitForNotification();
        }
      },
      &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("companies", 1)));
  first_commit_running.WaitForNotification();
  for (int i = 2; i <= 4; ++i) {
    ASSERT_TRUE(writer.Push(MakeEvent("companies", i)));
  }
  release_first_commit.Notify();
  EXPECT_TRUE(WaitUntil([&] { return log_.positions().size() == 4; }));
  EXPECT_THAT(log_.batches(), ElementsAre(Range(1, 1), Range(2, 4)));
}

TEST_F(EventWriterTest, StopDrainsTheQueue) {
  auto writer = std::make_unique<EventWriter>(
      store_.get(),
      EventWriter::Options{.max_batch = 7, .max_delay = absl::Hours(1)},
      log_.Callback(), &clock_);
  writer->Start();
  for (int i = 1; i <= 100; ++i) {
    ASSERT_TRUE(writer->Push(MakeEvent("filings", i)));
  }
  writer->Stop();
  EXPECT_EQ(store_->HeadPosition(), 100u);
  EXPECT_EQ(log_.positions(), Range(1, 100));
  EXPECT_FALSE(writer->Push(MakeEvent("filings", 101)));
  writer->Stop();   // idempotent
  writer->Flush();  // nothing pending
  writer.reset();
  EXPECT_EQ(store_->HeadPosition(), 100u);
}

TEST_F(EventWriterTest, StopWithoutStartCommitsOnTheCallingThread) {
  EventWriter writer(store_.get(), {}, log_.Callback(), &clock_);
  for (int i = 1; i <= 5; ++i)
    ASSERT_TRUE(writer.Push(MakeEvent("filings", i)));
  writer.Stop();
  EXPECT_EQ(store_->HeadPosition(), 5u);
  writer.Start();  // no effect after Stop
  EXPECT_FALSE(writer.Push(MakeEvent("filings", 6)));
}

TEST_F(EventWriterTest, DuplicatesAreCountedNotCommitted) {
  EventWriter writer(store_.get(), {}, log_.Callback(), &clock_);
  writer.Start();
  for (int tp : {1, 2, 2, 3, 1}) {
    ASSERT_TRUE(writer.Push(MakeEvent("companies", tp)));
  }
  writer.Flush();
  EXPECT_EQ(store_->HeadPosition(), 3u);
  EXPECT_EQ(writer.GetStats().duplicates, 2u);
  EXPECT_EQ(writer.GetStats().events, 3u);
}

// Verifies Push blocks while the queue is full, reports the wait by the
// injected clock, and resumes once the writer makes room.
TEST_F(EventWriterTest, PushBlocksWhileQueueIsFull) {
  absl::Notification in_callback;
  absl::Notification release;
  std::atomic<int> callbacks{0};
  EventWriter writer(
      store_.get(), {.queue_capacity = 1, .max_delay = absl::ZeroDuration()},
      [&](const CommitResult& r) {
        log_.Callback()(r);
        if (callbacks.fetch_add(1) == 0) {
          in_callback.Notify();
          release.WaitForNotification();
        }
      },
      &clock_);
  writer.Start();

  absl::Duration waited = absl::InfiniteDuration();
  ASSERT_TRUE(writer.Push(MakeEvent("filings", 1), &waited));
  EXPECT_EQ(waited, absl::ZeroDuration());
  ASSERT_TRUE(in_callback.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // The writer is stuck in the callback: event 2 fills the queue.
  ASSERT_TRUE(writer.Push(MakeEvent("filings", 2), &waited));
  EXPECT_EQ(waited, absl::ZeroDuration());
  EXPECT_EQ(writer.GetStats().queue_depth, 1u);

  std::atomic<bool> pushed{false};
  absl::Duration third_waited;
  std::thread pusher(
      [&] { pushed = writer.Push(MakeEvent("filings", 3), &third_waited); });
  ASSERT_TRUE(
      WaitUntil([&] { return writer.GetStats().pushers_waiting == 1; }));
  EXPECT_FALSE(pushed);
  clock_.Advance(absl::Seconds(7));
  release.Notify();
  pusher.join();
  EXPECT_TRUE(pushed);
  EXPECT_EQ(third_waited, absl::Seconds(7));

  writer.Flush();
  EXPECT_EQ(log_.positions(), Range(1, 3));
  EXPECT_EQ(writer.GetStats().pushers_waiting, 0u);
}

TEST_F(EventWriterTest, StopReleasesBlockedPushers) {
  absl::Notification in_callback;
  absl::Notification release;
  std::atomic<int> callbacks{0};
  EventWriter writer(
      store_.get(), {.queue_capacity = 1, .max_delay = absl::ZeroDuration()},
      [&](const CommitResult&) {
        if (callbacks.fetch_add(1) == 0) {
          in_callback.Notify();
          release.WaitForNotification();
        }
      },
      &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("filings", 1)));
  ASSERT_TRUE(in_callback.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(writer.Push(MakeEvent("filings", 2)));
  std::atomic<int> result{-1};
  std::thread pusher(
      [&] { result = writer.Push(MakeEvent("filings", 3)) ? 1 : 0; });
  ASSERT_TRUE(
      WaitUntil([&] { return writer.GetStats().pushers_waiting == 1; }));
  std::thread stopper([&] { writer.Stop(); });
  pusher.join();  // released by Stop without queuing
  EXPECT_EQ(result, 0);
  release.Notify();
  stopper.join();
  EXPECT_EQ(store_->HeadPosition(), 2u);  // what was queued is committed
}

// Captures log lines and notifies when one contains `needle`.
class LogWatcher {
 public:
  explicit LogWatcher(std::string needle) : needle_(std::move(needle)) {
    log::SetSinkForTest([this](std::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
      if (absl::StrContains(std::string(line), needle_) &&
          !seen_.HasBeenNotified()) {
        seen_.Notify();
      }
    });
  }
  ~LogWatcher() { log::SetSinkForTest(nullptr); }
  bool Wait() {
    return seen_.WaitForNotificationWithTimeout(absl::Seconds(30));
  }
  std::vector<std::string> lines() const {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

 private:
  const std::string needle_;
  absl::Notification seen_;
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

// Verifies a failed commit is logged and retried with the same batch
// until storage is available again: nothing is lost or duplicated.
TEST_F(EventWriterTest, FailedCommitIsLoggedAndRetried) {
  store_.reset();
  Store::Options options;
  options.busy_timeout = absl::ZeroDuration();
  OpenStore(options);
  LogWatcher watcher("storage commit failed");
  ASSERT_OK_AND_ASSIGN(Database other,
                       Database::Open(path_, SQLITE_OPEN_READWRITE));
  ASSERT_OK(other.Exec("BEGIN IMMEDIATE"));  // hold the write lock

  EventWriter writer(store_.get(), {.max_delay = absl::ZeroDuration()},
                     log_.Callback(), &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("companies", 1)));
  ASSERT_TRUE(writer.Push(MakeEvent("companies", 2)));
  ASSERT_TRUE(watcher.Wait());
  EXPECT_EQ(store_->HeadPosition(), 0u);
  EXPECT_THAT(log_.batches(), IsEmpty());

  ASSERT_OK(other.Exec("ROLLBACK"));
  writer.Flush();
  EXPECT_EQ(store_->HeadPosition(), 2u);
  EXPECT_EQ(log_.positions(), Range(1, 2));
  EventWriter::Stats stats = writer.GetStats();
  EXPECT_GE(stats.commit_errors, 1u);
  EXPECT_EQ(stats.items_dropped, 0u);
  EXPECT_EQ(StoredEvents().size(), 2u);
  bool mentions_error = false;
  for (const std::string& line : watcher.lines()) {
    if (absl::StrContains(line, "locked")) mentions_error = true;
  }
  EXPECT_TRUE(mentions_error);
}

// Verifies Stop cannot hang on a storage that keeps failing: it gives up
// after a few attempts, loudly, and counts what it dropped.
TEST_F(EventWriterTest, StopGivesUpOnPersistentFailureLoudly) {
  store_.reset();
  Store::Options options;
  options.busy_timeout = absl::ZeroDuration();
  OpenStore(options);
  LogWatcher watcher("storage commit failed");
  ASSERT_OK_AND_ASSIGN(Database other,
                       Database::Open(path_, SQLITE_OPEN_READWRITE));
  ASSERT_OK(other.Exec("BEGIN IMMEDIATE"));

  EventWriter writer(store_.get(), {.max_delay = absl::ZeroDuration()},
                     log_.Callback(), &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("companies", 1)));
  ASSERT_TRUE(watcher.Wait());
  writer.Stop();
  EXPECT_EQ(writer.GetStats().items_dropped, 1u);
  bool abandoned = false;
  for (const std::string& line : watcher.lines()) {
    if (absl::StrContains(line, "abandoned")) abandoned = true;
  }
  EXPECT_TRUE(abandoned);
  ASSERT_OK(other.Exec("ROLLBACK"));
  EXPECT_EQ(store_->HeadPosition(), 0u);
}

Event EventWithData(int64_t timepoint, size_t data_bytes) {
  Event e = MakeEvent("filings", timepoint);
  e.data_json = "\"" + std::string(data_bytes, 'x') + "\"";
  e.data_pb.clear();
  return e;
}

// Verifies the queue is bounded by the bytes of its items (and of the batch
// being committed), not only by their number; an item larger than the
// bound still goes through alone.
TEST_F(EventWriterTest, QueueIsBoundedInBytes) {
  const size_t one = EventWriter::ItemBytes(EventWithData(1, 4000));
  EventWriter writer(store_.get(),
                     {.queue_capacity = 1000,
                      .queue_bytes = 2 * one + one / 2,
                      .max_delay = absl::ZeroDuration()},
                     log_.Callback(), &clock_);  // not started: nothing drains
  ASSERT_TRUE(writer.Push(EventWithData(1, 4000)));
  ASSERT_TRUE(writer.Push(EventWithData(2, 4000)));
  EXPECT_EQ(writer.GetStats().queue_bytes, 2 * one);
  std::atomic<bool> pushed{false};
  std::thread pusher([&] { pushed = writer.Push(EventWithData(3, 4000)); });
  ASSERT_TRUE(
      WaitUntil([&] { return writer.GetStats().pushers_waiting == 1; }));
  EXPECT_FALSE(pushed);
  writer.Start();
  pusher.join();
  EXPECT_TRUE(pushed);
  writer.Flush();
  // Larger than the whole bound: taken into the empty queue.
  ASSERT_TRUE(writer.Push(EventWithData(4, 10 * one)));
  writer.Flush();
  EXPECT_EQ(log_.positions(), Range(1, 4));
  EXPECT_EQ(writer.GetStats().queue_bytes, 0u);
}

// Verifies a full disk (real SQLITE_FULL: the database may not grow) is
// reported by Health() with the SQLite error while the batch is retried,
// and that the same writer carries on by itself once space comes back.
TEST_F(EventWriterTest, FullDiskIsReportedAndRecoversByItself) {
  EventWriter writer(store_.get(), {.max_delay = absl::ZeroDuration()},
                     log_.Callback(), &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("filings", 1)));
  writer.Flush();
  EXPECT_EQ(writer.Health().consecutive_failures, 0u);

  store_->SetMaxPageCountForTest(1);  // no more growth
  for (int i = 2; i <= 200; ++i) {
    ASSERT_TRUE(writer.Push(EventWithData(i, 2000)));
  }
  ASSERT_TRUE(
      WaitUntil([&] { return writer.Health().consecutive_failures >= 2; }));
  EventWriter::CommitHealth health = writer.Health();
  EXPECT_EQ(health.last_error.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(health.last_error.message()),
              ::testing::HasSubstr("full"));
  EXPECT_NE(health.failing_since, absl::InfinitePast());

  store_->SetMaxPageCountForTest(0);  // space is back
  writer.Flush();
  EXPECT_EQ(writer.Health().consecutive_failures, 0u);
  EXPECT_EQ(log_.positions(), Range(1, 200));
  EXPECT_EQ(writer.GetStats().items_dropped, 0u);
}

// Verifies a producer blocked on a queue that cannot drain (every commit
// fails) is released by StopAccepting, and that Stop then gives up the
// failing batch and everything queued quickly instead of hanging.
TEST_F(EventWriterTest, StopAcceptingReleasesPushersWhileTheDiskIsFull) {
  EventWriter writer(
      store_.get(),
      {.queue_capacity = 4, .max_batch = 2, .max_delay = absl::ZeroDuration()},
      log_.Callback(), &clock_);
  writer.Start();
  ASSERT_TRUE(writer.Push(MakeEvent("filings", 1)));
  writer.Flush();
  store_->SetMaxPageCountForTest(1);
  std::atomic<int> accepted{0};
  std::atomic<bool> refused{false};
  std::thread producer([&] {
    for (int i = 2; i < 100; ++i) {
      // Larger than any page: none fits in the free space left in the
      // pages the database has (how much that is depends on the page size).
      if (!writer.Push(EventWithData(i, 70000))) {
        refused = true;
        return;
      }
      ++accepted;
    }
  });
  ASSERT_TRUE(
      WaitUntil([&] { return writer.GetStats().pushers_waiting == 1; }));
  writer.StopAccepting();
  producer.join();
  EXPECT_TRUE(refused);
  const absl::Time start = absl::Now();
  writer.Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EventWriter::Stats stats = writer.GetStats();
  // Whatever fit in the last free pages was committed; the rest is counted
  // as dropped (the upstream sends it again after a restart).
  EXPECT_GT(stats.items_dropped, 0u);
  EXPECT_EQ(stats.items_dropped + store_->HeadPosition() - 1,
            static_cast<uint64_t>(accepted.load()));
}

// Verifies an event that fails alone for a reason of its own (a value
// larger than SQLite accepts: real SQLITE_TOOBIG) is isolated from its batch
// and dead-lettered with the reason, while the other events commit in
// order.
TEST_F(EventWriterTest, TooBigEventIsIsolatedAndDeadLettered) {
  store_.reset();
  Store::Options options;
  options.max_value_bytes = 100000;  // above the dead letter's 64 KiB
  OpenStore(options);
  EventWriter writer(store_.get(), {}, log_.Callback(), &clock_);
  for (int i = 1; i <= 9; ++i) {
    ASSERT_TRUE(writer.Push(EventWithData(i, i == 6 ? 200000 : 100)));
  }
  writer.Start();
  writer.Flush();
  std::vector<int64_t> timepoints;
  for (const Event& e : StoredEvents()) timepoints.push_back(e.timepoint);
  EXPECT_THAT(timepoints, ElementsAre(1, 2, 3, 4, 5, 7, 8, 9));
  ASSERT_OK_AND_ASSIGN(std::vector<DeadLetter> dead,
                       store_->ReadDeadLetters(10));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].timepoint, 6);
  EXPECT_THAT(dead[0].reason, ::testing::HasSubstr("cannot store"));
  EXPECT_THAT(dead[0].reason, ::testing::HasSubstr("too big"));
  EXPECT_EQ(writer.GetStats().items_isolated, 1u);
  EXPECT_EQ(writer.Health().consecutive_failures, 0u);
}

// Verifies producers, the writer and readers running together: every
// event is committed once, in push order per producer, and readers see a
// dense prefix.
TEST_F(EventWriterTest, ConcurrentProducersAndReaders) {
  constexpr int kPerProducer = 2000;
  EventWriter writer(store_.get(),
                     {.queue_capacity = 64,
                      .max_batch = 50,
                      .max_delay = absl::Microseconds(200)},
                     log_.Callback(), &clock_);
  writer.Start();
  std::atomic<bool> reader_failed{false};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      uint64_t cursor = 0;
      while (!done || cursor < store_->HeadPosition()) {
        auto page =
            store_->ReadPage(cursor, store_->HeadPosition(), Filter{}, 100);
        if (!page.ok()) {
          reader_failed = true;
          return;
        }
        for (const Event& e : page->events) {
          if (e.position != cursor + 1) reader_failed = true;
          cursor = e.position;
        }
        cursor = std::max(cursor, page->scanned_through);
      }
    });
  }
  std::vector<std::thread> producers;
  for (const char* stream : {"filings", "officers"}) {
    producers.emplace_back([&writer, stream] {
      for (int i = 1; i <= kPerProducer; ++i) {
        writer.Push(MakeEvent(stream, i));
      }
    });
  }
  for (std::thread& t : producers) t.join();
  writer.Flush();
  done = true;
  for (std::thread& t : threads) t.join();

  EXPECT_FALSE(reader_failed);
  EXPECT_EQ(store_->HeadPosition(), 2u * kPerProducer);
  EXPECT_EQ(log_.positions(), Range(1, 2 * kPerProducer));
  std::vector<Event> stored = StoredEvents();
  int64_t last[2] = {0, 0};
  for (const Event& e : stored) {
    int64_t& l = last[e.stream == "filings" ? 0 : 1];
    EXPECT_EQ(e.timepoint, l + 1);
    l = e.timepoint;
  }
  EventWriter::Stats stats = writer.GetStats();
  EXPECT_EQ(stats.events, 2u * kPerProducer);
  EXPECT_EQ(stats.duplicates, 0u);
  EXPECT_GT(stats.batches, 1u);
  EXPECT_LE(stats.batch_size_sum / stats.batch_size_count, 50.0);
}

}  // namespace
}  // namespace chstream::storage
