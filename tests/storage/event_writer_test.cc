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
