// Tests of retention: EventStore::PruneStep and storage::Retainer, on both
// backends (a real SQLite file; a real PostgreSQL server,
// tests/storage/backends.h), with an injected clock for the event and prune
// times.
#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/retainer.h"
#include "storage/store.h"
#include "tests/storage/backends.h"
#include "tests/storage/test_util.h"

namespace chstream::storage {
namespace {

using ::chstream::storage::testing::Backend;
using ::chstream::storage::testing::BackendKind;
using ::chstream::storage::testing::CompanyEvent;
using ::chstream::storage::testing::MakeDeadLetter;
using ::chstream::storage::testing::MakeEvent;
using ::chstream::storage::testing::SqliteBackend;
using ::chstream::testing::StatusIs;
using ::testing::HasSubstr;

// An event of the filings stream received at `at`, with `data_bytes` of
// data that does not compress (PostgreSQL compresses large values), the same
// for every timepoint.
Event FilingAt(int64_t timepoint, absl::Time at, size_t data_bytes = 0) {
  Event e = MakeEvent("filings", timepoint);
  e.received_at = at;
  // In data_pb (the Store keeps data_json only for events without it), and
  // incompressible, so that PostgreSQL's TOAST compression does not hide it.
  if (data_bytes > 0) {
    e.data_pb.resize(data_bytes);
    uint32_t x = 12345;
    for (char& c : e.data_pb) {
      x = x * 1103515245 + 12345;
      c = static_cast<char>('a' + (x >> 16) % 26);
    }
  }
  return e;
}

Event CompanyAt(int64_t timepoint, const std::string& number,
                const std::string& name, absl::Time at) {
  Event e = CompanyEvent(timepoint, number, name);
  e.received_at = at;
  return e;
}

// PruneStep until nothing is left; the totals.
PruneStepResult PruneAll(EventStore& store, const RetentionPolicy& policy,
                         absl::Time now) {
  PruneStepResult total;
  for (int i = 0; i < 100000; ++i) {
    absl::StatusOr<PruneStepResult> r = store.PruneStep(policy, now);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    total.events += r->events;
    total.dead_letters += r->dead_letters;
    total.gaps += r->gaps;
    total.rows_given_data += r->rows_given_data;
    total.oldest_position = r->oldest_position;
    if (!r->more) break;
  }
  return total;
}

RetentionPolicy EventsFor(absl::Duration d, int rows = 1000) {
  RetentionPolicy p;
  p.events_for = d;
  p.rows_per_transaction = rows;
  return p;
}

class RetentionTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    backend_ = testing::MakeBackend(GetParam());
    ASSERT_OK(backend_->NewLocation());
  }
  absl::StatusOr<std::unique_ptr<EventStore>> Open() {
    return backend_->Open();
  }
  std::unique_ptr<Backend> backend_;
};

INSTANTIATE_TEST_SUITE_P(Backends, RetentionTest, testing::AllBackends(),
                         testing::BackendName);

using RetainerTest = RetentionTest;
INSTANTIATE_TEST_SUITE_P(Backends, RetainerTest, testing::AllBackends(),
                         testing::BackendName);

// Verifies that events received longer ago than events_for are deleted,
// oldest first, and that the rest stays readable.
TEST_P(RetentionTest, DeletesEventsOlderThanRetainFor) {
  FakeClock clock(testing::TestTime());
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  for (int i = 1; i <= 10; ++i) {
    Batch b;
    b.events.push_back(FilingAt(i, clock.Now()));
    ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
    clock.Advance(absl::Minutes(1));
  }
  // Now is 10 min after the first event: a 5 min 30 s retention keeps the
  // events received at minutes 5..9 (positions 6..10).
  ASSERT_OK_AND_ASSIGN(
      PruneStepResult r,
      store->PruneStep(EventsFor(absl::Seconds(330)), clock.Now()));
  EXPECT_EQ(r.events, 5u);
  EXPECT_EQ(r.oldest_position, 6u);
  EXPECT_FALSE(r.more);
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store->Stats());
  EXPECT_EQ(stats.oldest_position, 6u);
  EXPECT_EQ(stats.head_position, 10u);
  EXPECT_EQ(stats.events_stored, 5u);
  EXPECT_EQ(stats.events_pruned, 5u);
  EXPECT_EQ(stats.prune_transactions, 1u);  // nothing else configured
  EXPECT_GT(stats.longest_prune_seconds, 0);
  ASSERT_OK_AND_ASSIGN(uint64_t oldest, store->OldestPosition());
  EXPECT_EQ(oldest, 6u);

  ASSERT_OK_AND_ASSIGN(Page page, store->ReadPage(5, 100, Filter{}, 100));
  ASSERT_EQ(page.events.size(), 5u);
  EXPECT_EQ(page.events.front().position, 6u);
  EXPECT_EQ(page.events.back().position, 10u);
  // Nothing more is old enough.
  ASSERT_OK_AND_ASSIGN(
      r, store->PruneStep(EventsFor(absl::Seconds(330)), clock.Now()));
  EXPECT_EQ(r.events, 0u);
}

// Verifies that a read after a pruned position is OUT_OF_RANGE with the
// stored range, instead of silently starting at the oldest stored event.
TEST_P(RetentionTest, ReadAfterPrunedPositionIsOutOfRange) {
  FakeClock clock(testing::TestTime());
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  Batch b;
  for (int i = 1; i <= 20; ++i) b.events.push_back(FilingAt(i, clock.Now()));
  ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
  clock.Advance(absl::Hours(2));
  Batch b2;
  b2.events.push_back(FilingAt(21, clock.Now()));
  ASSERT_OK(store->Commit(std::move(b2), clock.Now()).status());
  PruneAll(*store, EventsFor(absl::Hours(1)), clock.Now());
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store->Stats());
  ASSERT_EQ(stats.oldest_position, 21u);

  for (uint64_t after : {0u, 5u, 19u}) {
    SCOPED_TRACE(after);
    EXPECT_THAT(store->ReadPage(after, 100, Filter{}, 10),
                StatusIs(absl::StatusCode::kOutOfRange,
                         HasSubstr("positions 21 to 21")));
  }
  // The position just before the oldest stored event is a valid cursor.
  ASSERT_OK_AND_ASSIGN(Page page, store->ReadPage(20, 100, Filter{}, 10));
  ASSERT_EQ(page.events.size(), 1u);
  EXPECT_EQ(page.events[0].position, 21u);
}

// Verifies that the newest event is never deleted, so that a reopened store
// derives the same head and never hands a position out twice.
TEST_P(RetentionTest, KeepsNewestEventSoPositionsAreNotReused) {
  FakeClock clock(testing::TestTime());
  {
    ASSERT_OK_AND_ASSIGN(auto store, Open());
    Batch b;
    for (int i = 1; i <= 7; ++i) b.events.push_back(FilingAt(i, clock.Now()));
    ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
    clock.Advance(absl::Hours(24));
    PruneStepResult r =
        PruneAll(*store, EventsFor(absl::Hours(1)), clock.Now());
    EXPECT_EQ(r.events, 6u);
    EXPECT_EQ(r.oldest_position, 7u);
  }
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  EXPECT_EQ(store->HeadPosition(), 7u);
  Batch b;
  b.events.push_back(FilingAt(8, clock.Now()));
  ASSERT_OK_AND_ASSIGN(CommitResult c,
                       store->Commit(std::move(b), clock.Now()));
  ASSERT_EQ(c.events->size(), 1u);
  EXPECT_EQ((*c.events)[0].position, 8u);
}

// Verifies that no transaction deletes more than rows_per_transaction events
// and that `more` says when to continue.
TEST_P(RetentionTest, RowsPerTransactionBoundsEachStep) {
  FakeClock clock(testing::TestTime());
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  Batch b;
  for (int i = 1; i <= 95; ++i) b.events.push_back(FilingAt(i, clock.Now()));
  ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
  clock.Advance(absl::Hours(1));
  const RetentionPolicy policy = EventsFor(absl::Minutes(1), /*rows=*/10);
  std::vector<uint64_t> steps;
  while (true) {
    ASSERT_OK_AND_ASSIGN(PruneStepResult r,
                         store->PruneStep(policy, clock.Now()));
    steps.push_back(r.events);
    if (!r.more) break;
    ASSERT_LT(steps.size(), 100u);
  }
  // 94 deletable (the newest is kept): nine full steps, then 4.
  ASSERT_EQ(steps.size(), 10u);
  for (size_t i = 0; i < 9; ++i) EXPECT_EQ(steps[i], 10u) << i;
  EXPECT_EQ(steps[9], 4u);
}

// Verifies that a company whose data lives in a deleted event keeps it
// (copied onto its row), and that newer data still wins.
TEST_P(RetentionTest, CompanyKeepsDataOfPrunedEvent) {
  FakeClock clock(testing::TestTime());
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  const absl::Time t0 = clock.Now();
  {
    Batch b;
    b.events.push_back(CompanyAt(1, "00000001", "FIRST LTD", t0));
    b.events.push_back(CompanyAt(2, "00000002", "SECOND LTD", t0));
    // An update without data: keeps the data of event 1 (position 1).
    Event no_data = CompanyAt(3, "00000001", "ignored", t0);
    no_data.company.reset();
    no_data.data_json.clear();
    no_data.data_pb.clear();
    b.events.push_back(no_data);
    b.events.push_back(FilingAt(1, t0));
    ASSERT_OK(store->Commit(std::move(b), t0).status());
  }
  ASSERT_OK_AND_ASSIGN(std::optional<CompanyRecord> before,
                       store->GetCompany("00000001"));
  ASSERT_TRUE(before.has_value());
  ASSERT_THAT(before->data_pb, HasSubstr("FIRST LTD"));

  clock.Advance(absl::Hours(1));
  {
    Batch b;
    b.events.push_back(
        CompanyAt(4, "00000002", "SECOND RENAMED LTD", clock.Now()));
    ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
  }
  PruneStepResult r =
      PruneAll(*store, EventsFor(absl::Minutes(30)), clock.Now());
  EXPECT_EQ(r.events, 4u);
  // Company 1's data event was pruned; company 2's had been replaced. The
  // rows given data: company 1's, and the resources rows of that profile
  // and of the filing.
  EXPECT_EQ(r.rows_given_data, 3u);

  ASSERT_OK_AND_ASSIGN(std::optional<CompanyRecord> after,
                       store->GetCompany("00000001"));
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->data_json, before->data_json);
  EXPECT_EQ(after->data_pb, before->data_pb);
  EXPECT_EQ(after->fields, before->fields);
  EXPECT_EQ(after->last_position, 3u);
  ASSERT_OK_AND_ASSIGN(std::optional<CompanyRecord> second,
                       store->GetCompany("00000002"));
  ASSERT_TRUE(second.has_value());
  EXPECT_THAT(second->data_pb, HasSubstr("SECOND RENAMED LTD"));
  // So does the resource of its profile.
  ASSERT_OK_AND_ASSIGN(std::optional<ResourceRecord> profile,
                       store->GetResource("/company/00000001"));
  ASSERT_TRUE(profile.has_value());
  EXPECT_EQ(profile->data_json, before->data_json);
  EXPECT_EQ(profile->data_pb, before->data_pb);
  EXPECT_EQ(profile->last_position, 3u);

  // New data for company 1 replaces the copy; pruning that event in turn
  // copies the new data.
  clock.Advance(absl::Hours(1));
  {
    Batch b;
    b.events.push_back(
        CompanyAt(5, "00000001", "FIRST RENAMED LTD", clock.Now()));
    b.events.push_back(FilingAt(2, clock.Now()));
    ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
  }
  ASSERT_OK_AND_ASSIGN(after, store->GetCompany("00000001"));
  EXPECT_THAT(after->data_pb, HasSubstr("FIRST RENAMED LTD"));
  clock.Advance(absl::Hours(1));
  r = PruneAll(*store, EventsFor(absl::Minutes(30)), clock.Now());
  EXPECT_EQ(r.events, 2u);  // positions 5 and 6; 7 is the head
  ASSERT_OK_AND_ASSIGN(after, store->GetCompany("00000001"));
  EXPECT_THAT(after->data_pb, HasSubstr("FIRST RENAMED LTD"));
  EXPECT_EQ(after->data_pb, "pb:FIRST RENAMED LTD");
  ASSERT_OK_AND_ASSIGN(second, store->GetCompany("00000002"));
  EXPECT_THAT(second->data_pb, HasSubstr("SECOND RENAMED LTD"));
}

// Verifies that max_bytes deletes the oldest events, whatever their age,
// until the used pages fit, and then nothing more.
TEST_P(RetentionTest, MaxBytesDeletesOldestUntilUsedPagesFit) {
  FakeClock clock(testing::TestTime());
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  int64_t timepoint = 0;
  for (int batch = 0; batch < 10; ++batch) {
    Batch b;
    for (int i = 0; i < 100; ++i) {
      b.events.push_back(FilingAt(++timepoint, clock.Now(), 4000));
    }
    ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
  }
  // ~4 MB of events; a 1 MB cap keeps roughly the newest quarter.
  RetentionPolicy policy;
  policy.max_bytes = 1 << 20;
  policy.rows_per_transaction = 100;
  PruneStepResult r = PruneAll(*store, policy, clock.Now());
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store->Stats());
  EXPECT_GT(r.events, 600u);
  EXPECT_LT(r.events, 1000u);
  EXPECT_EQ(stats.oldest_position, r.events + 1);
  EXPECT_EQ(stats.head_position, 1000u);
  // Under the cap now: another pass deletes nothing.
  ASSERT_OK_AND_ASSIGN(PruneStepResult again,
                       store->PruneStep(policy, clock.Now()));
  EXPECT_EQ(again.events, 0u);
}

// Verifies that dead letters and gaps older than dead_letters_for are
// deleted and the rest kept.
TEST_P(RetentionTest, DeletesOldDeadLettersAndGaps) {
  FakeClock clock(testing::TestTime());
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  for (int day = 0; day < 4; ++day) {
    Batch b;
    DeadLetter d = MakeDeadLetter("companies", absl::StrCat("day ", day));
    d.received_at = clock.Now();
    b.dead_letters.push_back(d);
    b.gaps.push_back(Gap{.stream = "filings",
                         .last_timepoint = day,
                         .recorded_at = clock.Now()});
    ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
    clock.Advance(absl::Hours(24));
  }
  RetentionPolicy policy;
  policy.dead_letters_for = absl::Hours(60);  // keeps days 2 and 3
  PruneStepResult r = PruneAll(*store, policy, clock.Now());
  EXPECT_EQ(r.dead_letters, 2u);
  EXPECT_EQ(r.gaps, 2u);
  ASSERT_OK_AND_ASSIGN(std::vector<DeadLetter> left,
                       store->ReadDeadLetters(10));
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].reason, "day 3");
  EXPECT_EQ(left[1].reason, "day 2");
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store->Stats());
  EXPECT_EQ(stats.dead_letters, 2u);
  EXPECT_EQ(stats.dead_letters_pruned, 4u);
  ASSERT_OK_AND_ASSIGN(std::vector<StreamState> states,
                       store->LoadStreamStates());
  ASSERT_EQ(states.size(), 1u);
  ASSERT_EQ(states[0].gaps.size(), 2u);
  EXPECT_EQ(states[0].gaps[0].last_timepoint, 2);
}

// Verifies that under steady ingest with a short retention the database
// file stops growing: freed pages are reused. The clock is injected: each
// round is one "minute" of ingest, with a 10-minute retention, for 60 rounds
// (six retention windows of data).
// SQLite only: on PostgreSQL free space is reused once autovacuum has been
// through the table, which runs on its own schedule.
TEST_P(RetentionTest, FileSizeStaysFlatUnderSteadyIngest) {
  if (GetParam() != BackendKind::kSqlite) GTEST_SKIP() << "autovacuum's";
  FakeClock clock(testing::TestTime());
  Store::Options options;
  options.checkpoint_bytes = 256 << 10;
  options.wal_limit_bytes = 1 << 20;
  const std::string path = static_cast<SqliteBackend&>(*backend_).path();
  ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path, options));
  const RetentionPolicy policy = EventsFor(absl::Minutes(10), 500);
  constexpr int kRounds = 60;
  constexpr int kEventsPerRound = 200;
  constexpr size_t kDataBytes = 2000;
  int64_t timepoint = 0;
  std::vector<uint64_t> sizes;
  for (int round = 0; round < kRounds; ++round) {
    for (int batch = 0; batch < 4; ++batch) {
      Batch b;
      for (int i = 0; i < kEventsPerRound / 4; ++i) {
        Event e = FilingAt(++timepoint, clock.Now(), kDataBytes);
        // 100 resources updated over and over: their current state (one
        // row each, kept whatever the retention) stays bounded, so what
        // grows or not is the event log alone.
        e.resource_uri =
            absl::StrCat("/company/00000001/filing-history/F", timepoint % 100);
        b.events.push_back(std::move(e));
      }
      ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
    }
    clock.Advance(absl::Minutes(1));
    PruneAll(*store, policy, clock.Now());
    ASSERT_OK_AND_ASSIGN(StoreStats stats, store->Stats());
    sizes.push_back(stats.db_size_bytes);
  }
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store->Stats());
  // 10 minutes of events are kept.
  EXPECT_EQ(stats.events_stored, 10u * kEventsPerRound);
  EXPECT_EQ(stats.events_pruned,
            static_cast<uint64_t>(kRounds - 10) * kEventsPerRound);
  const uint64_t ingested = uint64_t{kRounds} * kEventsPerRound * kDataBytes;
  const uint64_t window = 10u * kEventsPerRound * kDataBytes;
  // After two windows the size is at its plateau: the largest size in the
  // last half of the run is within 25% of the largest of rounds 20-29, and
  // far below what was ingested.
  const uint64_t plateau =
      *std::max_element(sizes.begin() + 20, sizes.begin() + 30);
  const uint64_t late = *std::max_element(sizes.begin() + 30, sizes.end());
  std::printf(
      "retention size: window %llu B, ingested %llu B, plateau %llu B, "
      "last half max %llu B, final %llu B\n",
      static_cast<unsigned long long>(window),
      static_cast<unsigned long long>(ingested),
      static_cast<unsigned long long>(plateau),
      static_cast<unsigned long long>(late),
      static_cast<unsigned long long>(sizes.back()));
  EXPECT_LE(late, plateau + plateau / 4);
  EXPECT_LT(late, ingested / 2);
}

// Verifies that a Retainer pass, running on its thread while a writer
// commits, prunes down to the policy; and measures the longest prune
// transaction and the writer's commit latency meanwhile (printed; the
// figures are in bench/RESULTS.md).
TEST_P(RetainerTest, PrunesWhileTheWriterCommits) {
  FakeClock clock(testing::TestTime());
  ASSERT_OK_AND_ASSIGN(auto store, Open());
  // A backlog of 20000 old events (~2 KB each).
  int64_t timepoint = 0;
  for (int batch = 0; batch < 40; ++batch) {
    Batch b;
    for (int i = 0; i < 500; ++i) {
      b.events.push_back(FilingAt(++timepoint, clock.Now(), 2000));
    }
    ASSERT_OK(store->Commit(std::move(b), clock.Now()).status());
  }
  clock.Advance(absl::Hours(2));
  Retainer::Options options;
  options.policy = EventsFor(absl::Hours(1), 500);
  options.interval = absl::Hours(1);
  Retainer retainer(store.get(), options, &clock);

  // The writer: batches of 20 events, timed; first alone (the baseline),
  // then while the pass runs.
  auto commit_timed = [&]() -> absl::Duration {
    Batch b;
    for (int i = 0; i < 20; ++i) {
      b.events.push_back(FilingAt(++timepoint, clock.Now(), 2000));
    }
    const absl::Time start = Clock::Real()->Now();
    EXPECT_OK(store->Commit(std::move(b), clock.Now()).status());
    return Clock::Real()->Now() - start;
  };
  auto summary = [](std::vector<absl::Duration> v) {
    std::sort(v.begin(), v.end());
    if (v.empty()) return std::string("none");
    return absl::StrCat(v.size(), " commits, median ",
                        absl::ToDoubleMilliseconds(v[v.size() / 2]),
                        " ms, max ", absl::ToDoubleMilliseconds(v.back()),
                        " ms");
  };
  std::vector<absl::Duration> alone;
  for (int i = 0; i < 50; ++i) alone.push_back(commit_timed());
  std::atomic<bool> done{false};
  std::vector<absl::Duration> pruning;
  std::thread writer([&] {
    while (!done.load()) pruning.push_back(commit_timed());
  });
  absl::StatusOr<PruneStepResult> pass = retainer.RunPass();
  done.store(true);
  writer.join();
  ASSERT_TRUE(pass.ok()) << pass.status();
  EXPECT_EQ(pass->events, 20000u);
  ASSERT_OK_AND_ASSIGN(StoreStats stats, store->Stats());
  EXPECT_EQ(stats.oldest_position, 20001u);
  std::printf(
      "retainer: %llu events in %llu transactions, longest %.2f ms, mean "
      "%.2f ms\nwriter alone: %s\nwriter while pruning: %s\n",
      static_cast<unsigned long long>(pass->events),
      static_cast<unsigned long long>(stats.prune_transactions),
      stats.longest_prune_seconds * 1e3,
      stats.prune_seconds_total * 1e3 /
          std::max<uint64_t>(stats.prune_transactions, 1),
      summary(alone).c_str(), summary(pruning).c_str());
}

}  // namespace
}  // namespace chstream::storage
