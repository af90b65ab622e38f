// Integration tests of resuming ingestion from storage (the next timepoint
// after the last committed one; duplicates of an inclusive replay dropped and
// counted) and of following all nine streams at once over two keys within
// the per-key connection cap.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "storage/event.h"
#include "tests/ingest/integration/ingest_harness.h"

namespace chstream::ingest::testing {
namespace {

constexpr char kStream[] = "companies";

TEST(IngestResumeTest, RestartResumesAfterTheLastCommittedTimepoint) {
  constexpr int64_t kTotal = 400;
  ASSERT_OK_AND_ASSIGN(
      auto sim, sim::Simulator::Start(SimOptions(kTotal, 100, /*rate=*/400)));
  const std::string db = TestDbPath();

  // First run: stopped part-way, while events are still being published.
  ASSERT_OK_AND_ASSIGN(auto first, Pipeline::Open(db));
  ASSERT_OK(first->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(first->WaitForCommittedEvents(150, absl::Seconds(10)));
  first->StopIngester();
  const StreamStatusSnapshot first_status = first->Status(kStream);
  first->Close();
  EXPECT_EQ(first_status.duplicates_total, 0u);
  ASSERT_LT(first_status.events_total, static_cast<uint64_t>(kTotal));

  // Second run, as after a restart: a new store handle and ingester, started
  // from the stored stream state.
  ASSERT_OK_AND_ASSIGN(auto second, Pipeline::Open(db));
  ASSERT_OK_AND_ASSIGN(std::vector<storage::StreamState> states,
                       second->store()->LoadStreamStates());
  ASSERT_EQ(states.size(), 1u);
  ASSERT_TRUE(states[0].last_timepoint.has_value());
  const int64_t last = *states[0].last_timepoint;
  EXPECT_EQ(first_status.last_timepoint, last);
  LogCapture logs;
  ASSERT_OK(second->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(RunToCompletion(*sim, *second, kStream, kTotal));
  second->StopIngester();
  const StreamStatusSnapshot second_status = second->Status(kStream);

  EXPECT_EQ(logs.Targets(kStream), std::vector<std::string>{absl::StrCat(
                                       "/companies?timepoint=", last + 1)});
  EXPECT_TRUE(StoreMatchesLog(*second->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(second_status.duplicates_total, 0u);
  EXPECT_EQ(first_status.events_total + second_status.events_total,
            static_cast<uint64_t>(kTotal));
  EXPECT_EQ(second->writer()->GetStats().duplicates, 0u);
}

// The stored state claims `overlap` events fewer than were stored, so the
// upstream re-sends them (as it does when asked inclusively): storage drops
// them and the stream counts them.
class InclusiveReplayTest : public ::testing::TestWithParam<int> {};

TEST_P(InclusiveReplayTest, DuplicatesAreDroppedAndCounted) {
  const int overlap = GetParam();
  constexpr int64_t kTotal = 300;
  ASSERT_OK_AND_ASSIGN(
      auto sim, sim::Simulator::Start(SimOptions(kTotal, 100, /*rate=*/400)));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(pipeline->WaitForCommittedEvents(120, absl::Seconds(10)));
  pipeline->StopIngester();
  ASSERT_OK_AND_ASSIGN(std::vector<storage::Event> stored,
                       ReadAllEvents(*pipeline->store()));
  ASSERT_GT(stored.size(), static_cast<size_t>(overlap));
  ASSERT_LT(stored.size(), static_cast<size_t>(kTotal));
  const int64_t last = stored.back().timepoint;

  ASSERT_OK_AND_ASSIGN(std::vector<storage::StreamState> states,
                       pipeline->store()->LoadStreamStates());
  ASSERT_EQ(states.size(), 1u);
  ASSERT_EQ(states[0].last_timepoint, last);
  // overlap 1: exactly "?timepoint=<last>".
  states[0].last_timepoint =
      overlap == 1 ? last - 1 : stored[stored.size() - 1 - overlap].timepoint;
  LogCapture logs;
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream}), states));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);

  if (overlap == 1) {
    EXPECT_EQ(logs.Targets(kStream), std::vector<std::string>{absl::StrCat(
                                         "/companies?timepoint=", last)});
  }
  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(done.duplicates_total, static_cast<uint64_t>(overlap));
  EXPECT_EQ(done.events_total, kTotal - stored.size() + overlap);
  EXPECT_EQ(pipeline->writer()->GetStats().duplicates,
            static_cast<uint64_t>(overlap));
  EXPECT_EQ(done.last_timepoint, sim->Log(kStream).back().timepoint);
}

INSTANTIATE_TEST_SUITE_P(Overlaps, InclusiveReplayTest,
                         ::testing::Values(1, 25));

TEST(IngestResumeTest, AllNineStreamsOverTwoKeysWithinThePerKeyCap) {
  constexpr int64_t kTotal = 150;
  sim::Options so = SimOptions(kTotal, /*initial=*/60);
  so.keys = {"key-a", "key-b"};
  so.streams.clear();  // all nine produce
  so.stream_rates.clear();
  for (const char* stream : storage::kStreamNames) {
    so.stream_rates[stream] = 200;
  }
  so.max_connections_per_key = 5;
  so.cap_mode = sim::CapMode::kRejectWith429;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));

  std::vector<std::string> streams(std::begin(storage::kStreamNames),
                                   std::end(storage::kStreamNames));
  IngesterOptions io = ClientOptions(*sim, streams);
  io.keys = so.keys;
  io.max_connections_per_key = 5;
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(io));
  for (const std::string& stream : streams) {
    ASSERT_TRUE(RunToCompletion(*sim, *pipeline, stream, kTotal)) << stream;
  }
  const sim::Stats stats = sim->GetStats();
  std::vector<StreamStatusSnapshot> live;
  for (const std::string& stream : streams) {
    live.push_back(pipeline->Status(stream));
  }
  pipeline->StopIngester();

  // Round robin: five streams on the first key, four on the second.
  EXPECT_EQ(stats.connections_by_key.at("key-a"), 5);
  EXPECT_EQ(stats.connections_by_key.at("key-b"), 4);
  EXPECT_EQ(stats.RequestsWithStatus(429), 0);
  EXPECT_EQ(stats.RequestsWithStatus(200), 9);

  ASSERT_OK_AND_ASSIGN(std::vector<storage::Event> all,
                       ReadAllEvents(*pipeline->store()));
  EXPECT_TRUE(PositionsAreDense(all));
  EXPECT_EQ(all.size(), streams.size() * kTotal);
  for (size_t i = 0; i < streams.size(); ++i) {
    SCOPED_TRACE(streams[i]);
    EXPECT_TRUE(EventsMatchLog(EventsOf(all, streams[i]), streams[i],
                               sim->Log(streams[i])));
    EXPECT_EQ(live[i].state, StreamState::kStreaming);
    EXPECT_EQ(live[i].events_total, static_cast<uint64_t>(kTotal));
    EXPECT_EQ(live[i].reconnects_total, 0u);
    EXPECT_GT(live[i].heartbeats_total, 0u);
  }
}

TEST(IngestResumeTest, MoreStreamsThanKeysTimesCapIsRefusedAtStart) {
  ASSERT_OK_AND_ASSIGN(auto sim,
                       sim::Simulator::Start(SimOptions(10, /*initial=*/10)));
  std::vector<std::string> streams(std::begin(storage::kStreamNames),
                                   std::end(storage::kStreamNames));
  IngesterOptions io = ClientOptions(*sim, streams);
  io.max_connections_per_key = 5;  // one key: 5 < 9
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  const absl::Status s = pipeline->StartIngester(io);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "9 streams")) << s;
  EXPECT_EQ(sim->GetStats().connections_accepted, 0);
}

}  // namespace
}  // namespace chstream::ingest::testing
