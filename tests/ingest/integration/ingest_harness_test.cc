// The comparison helpers of the ingest integration tests must be able to
// fail: missing, extra, reordered or altered events and holes in positions
// are all reported.
#include "tests/ingest/integration/ingest_harness.h"

#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "ingest/event_parser.h"
#include "ingest/simulator/event_generator.h"
#include "ingest/simulator/simulator.h"

namespace chstream::ingest::testing {
namespace {

constexpr char kStream[] = "companies";

std::vector<sim::Simulator::LogEntry> MakeLog(int n) {
  sim::EventGenerator gen(sim::StreamKind::kCompanies, /*seed=*/3);
  std::vector<sim::Simulator::LogEntry> log;
  for (int i = 0; i < n; ++i) {
    sim::Simulator::LogEntry e;
    e.timepoint = gen.Next(absl::FromUnixSeconds(1'700'000'000 + i), &e.line);
    log.push_back(std::move(e));
  }
  return log;
}

// What ingesting `log` would store: parsed lines at positions 1..N.
std::vector<storage::Event> Store(
    const std::vector<sim::Simulator::LogEntry>& log) {
  EventParser parser;
  std::vector<storage::Event> out;
  for (const auto& entry : log) {
    auto parsed = parser.Parse(kStream, entry.line, absl::Now());
    storage::Event e = std::get<storage::Event>(std::move(parsed));
    e.company.reset();  // not read back from storage
    // Stored once: as data_pb where there is one (storage/store.h).
    if (!e.data_pb.empty()) e.data_json.clear();
    e.position = out.size() + 1;
    out.push_back(std::move(e));
  }
  return out;
}

TEST(IngestHarnessTest, IdenticalEventsMatch) {
  const auto log = MakeLog(20);
  EXPECT_TRUE(EventsMatchLog(Store(log), kStream, log));
  EXPECT_TRUE(PositionsAreDense(Store(log)));
}

TEST(IngestHarnessTest, MissingExtraAndReorderedEventsAreReported) {
  const auto log = MakeLog(20);
  std::vector<storage::Event> stored = Store(log);
  stored.pop_back();
  EXPECT_FALSE(EventsMatchLog(stored, kStream, log));
  stored = Store(log);
  stored.push_back(stored.back());
  EXPECT_FALSE(EventsMatchLog(stored, kStream, log));
  stored = Store(log);
  std::swap(stored[3], stored[4]);
  EXPECT_FALSE(EventsMatchLog(stored, kStream, log));
}

TEST(IngestHarnessTest, AlteredFieldsAreReported) {
  const auto log = MakeLog(20);
  std::vector<storage::Event> stored = Store(log);
  stored[5].data_pb = absl::StrReplaceAll(stored[5].data_pb, {{"a", "b"}});
  EXPECT_FALSE(EventsMatchLog(stored, kStream, log));
  stored = Store(log);
  stored[6].published_at += absl::Microseconds(1);
  EXPECT_FALSE(EventsMatchLog(stored, kStream, log));
  stored = Store(log);
  stored[7].data_pb.clear();
  EXPECT_FALSE(EventsMatchLog(stored, kStream, log));
  stored = Store(log);
  stored[8].stream = "filings";
  EXPECT_FALSE(EventsMatchLog(stored, kStream, log));
}

TEST(IngestHarnessTest, HolesInPositionsAreReported) {
  std::vector<storage::Event> stored = Store(MakeLog(5));
  stored[2].position = 4;
  EXPECT_FALSE(PositionsAreDense(stored));
}

TEST(IngestHarnessTest, JsonFieldsAreReadFromLogLines) {
  const std::string line =
      R"({"msg":"connecting to upstream","stream":"companies",)"
      R"("target":"/companies?timepoint=5","note":"a \"quoted\" \\ \u0041",)"
      R"("retry_in":0.25})";
  EXPECT_EQ(JsonStringField(line, "target"), "/companies?timepoint=5");
  EXPECT_EQ(JsonStringField(line, "note"), "a \"quoted\" \\ A");
  EXPECT_EQ(JsonStringField(line, "absent"), "");
  EXPECT_EQ(JsonNumberField(line, "retry_in"), 0.25);
  EXPECT_EQ(JsonNumberField(line, "absent"), std::nullopt);
}

}  // namespace
}  // namespace chstream::ingest::testing
