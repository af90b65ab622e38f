// Integration tests of what a broken or hostile upstream can send (issue 9
// items 6 and 8), over real sockets against the in-process simulator's
// fault knobs, through the real Ingester -> WriterSink -> EventWriter ->
// Store pipeline: wild timepoints, long malformed lines, error bodies that
// are not UTF-8, oversized response headers and endless chunk extensions.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "base/utf8.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "tests/ingest/integration/ingest_harness.h"

namespace chstream::ingest::testing {
namespace {

constexpr char kStream[] = "companies";

// A valid company-profile event line with timepoint `timepoint`.
std::string ProfileLine(const std::string& timepoint) {
  return absl::StrCat(
      R"({"resource_kind":"company-profile","resource_uri":"/company/00000000",)"
      R"("resource_id":"00000000","data":{"company_number":"00000000"},)"
      R"("event":{"timepoint":)",
      timepoint, R"(,"published_at":"2022-08-02T15:21:06","type":"changed"}})");
}

// Runs the simulator with `faults` (malformed_every lines are injected
// between real events) until all `total` events are committed; checks that
// the store holds exactly the simulator's log and returns the dead letters,
// oldest first.
std::vector<storage::DeadLetter> IngestWithInjectedLines(
    const sim::Faults& faults, int64_t total, std::vector<std::string>* sent) {
  sim::Options so = SimOptions(total, /*initial=*/total / 2, /*rate=*/500);
  so.faults = faults;
  auto sim = sim::Simulator::Start(so);
  EXPECT_OK(sim.status());
  if (!sim.ok()) return {};
  auto pipeline = Pipeline::Open(TestDbPath());
  EXPECT_OK(pipeline.status());
  if (!pipeline.ok()) return {};
  EXPECT_OK((*pipeline)->StartIngester(ClientOptions(**sim, {kStream})));
  EXPECT_TRUE(RunToCompletion(**sim, **pipeline, kStream, total));
  (*pipeline)->StopIngester();
  EXPECT_TRUE(
      StoreMatchesLog(*(*pipeline)->store(), kStream, (*sim)->Log(kStream)));
  const StreamStatusSnapshot done = (*pipeline)->Status(kStream);
  EXPECT_EQ(done.last_timepoint, (*sim)->Log(kStream).back().timepoint);
  *sent = (*sim)->MalformedSent(kStream);
  EXPECT_EQ(done.malformed_total, sent->size());
  auto dead = (*pipeline)->store()->ReadDeadLetters(100000);
  EXPECT_OK(dead.status());
  if (!dead.ok()) return {};
  std::reverse(dead->begin(), dead->end());
  return *std::move(dead);
}

// Item 6: a timepoint of INT64_MAX used to be accepted and become the
// resume point (every later real event dropped as a duplicate, for good, and
// `+ 1` overflowing on reconnect).
TEST(IngestHostileTest, OverflowingTimepointIsDeadLetteredNotCommitted) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  sim::Faults faults;
  faults.malformed_every = 40;
  faults.malformed_line = ProfileLine(absl::StrCat(kMax));
  std::vector<std::string> sent;
  const std::vector<storage::DeadLetter> dead =
      IngestWithInjectedLines(faults, 200, &sent);
  ASSERT_EQ(sent.size(), 5u);
  ASSERT_EQ(dead.size(), sent.size());
  for (const storage::DeadLetter& d : dead) {
    EXPECT_EQ(d.reason, absl::StrCat("event.timepoint ", kMax,
                                     " is too large (would overflow)"));
    EXPECT_EQ(d.timepoint, kMax);
    EXPECT_EQ(d.raw, faults.malformed_line);
  }
}

TEST(IngestHostileTest, TimepointJumpingPastTheLastIsDeadLettered) {
  // The simulator's timepoints start at 82,000,000: 5,000,000,000 is more
  // than 10^9 past any of them.
  sim::Faults faults;
  faults.malformed_every = 40;
  faults.malformed_line = ProfileLine("5000000000");
  std::vector<std::string> sent;
  const std::vector<storage::DeadLetter> dead =
      IngestWithInjectedLines(faults, 200, &sent);
  ASSERT_EQ(dead.size(), 5u);
  for (const storage::DeadLetter& d : dead) {
    EXPECT_TRUE(absl::StartsWith(
        d.reason,
        "event.timepoint 5000000000 is more than 1000000000 past the "
        "stream's last timepoint "))
        << d.reason;
    EXPECT_EQ(d.timepoint, 5'000'000'000);
  }
}

// Item 8: a dead letter kept the whole line (up to --max_line_bytes, 8 MiB).
TEST(IngestHostileTest, DeadLettersKeepAtMost64KiB) {
  sim::Faults faults;
  faults.malformed_every = 50;
  // Unterminated: invalid JSON, 200 KB, under the 8 MiB line cap.
  faults.malformed_line =
      absl::StrCat(R"({"resource_kind":")", std::string(200'000, 'x'));
  std::vector<std::string> sent;
  const std::vector<storage::DeadLetter> dead =
      IngestWithInjectedLines(faults, 100, &sent);
  ASSERT_EQ(dead.size(), 2u);
  for (const storage::DeadLetter& d : dead) {
    EXPECT_EQ(d.raw.size(), size_t{64} << 10);
    EXPECT_TRUE(d.raw == faults.malformed_line.substr(0, 64 << 10));
    EXPECT_TRUE(absl::StartsWith(d.reason, "invalid JSON")) << d.reason;
    EXPECT_TRUE(absl::EndsWith(
        d.reason, absl::StrCat(" (line of ", faults.malformed_line.size(),
                               " bytes, first 65536 bytes kept)")))
        << d.reason;
  }
}

// Item 8: error bodies were cut mid-character at 4 KiB and copied with any
// invalid bytes into StreamStatus.last_error, a proto string: a client then
// rejected the whole GetStatus response.
TEST(IngestHostileTest, ErrorBodyInLastErrorIsValidUtf8) {
  const std::string euro = "\xE2\x82\xAC";
  sim::Options so = SimOptions(10, /*initial=*/10);
  so.faults.fail_first_attempts = 1'000'000;
  so.faults.fail_status = 503;
  // An invalid byte, then filler so that the 4 KiB cut falls inside a euro.
  const std::string head = "bad \xFF byte ";
  so.faults.fail_body = absl::StrCat(head, std::string(4095 - head.size(), 'a'),
                                     euro, euro, "\xC3");
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  LogCapture logs;
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(pipeline->WaitForStatus(
      kStream,
      [](const StreamStatusSnapshot& s) {
        auto it = s.reconnects_by_cause.find("http_503");
        return it != s.reconnects_by_cause.end() && it->second >= 2;
      },
      absl::Seconds(10)));
  const StreamStatusSnapshot status = pipeline->Status(kStream);
  pipeline->StopIngester();

  EXPECT_TRUE(IsValidUtf8(status.last_error));
  EXPECT_TRUE(absl::StartsWith(status.last_error,
                               "HTTP 503 Service Unavailable: bad \xEF\xBF\xBD "
                               "byte aaa"))
      << status.last_error;
  // Cut before the euro that straddles 4 KiB.
  EXPECT_TRUE(absl::EndsWith(status.last_error, "aaaa")) << status.last_error;
  const auto ended = logs.Find("upstream connection ended", kStream);
  ASSERT_FALSE(ended.empty());
  for (const LogCapture::Line& line : ended) {
    EXPECT_TRUE(IsValidUtf8(line.json));
  }
}

// Waits until `stream` has failed `attempts` times with a network error and
// returns its status. No event may have been stored.
StreamStatusSnapshot FailedAttempts(const Pipeline& pipeline, int attempts) {
  EXPECT_TRUE(pipeline.WaitForStatus(
      kStream,
      [attempts](const StreamStatusSnapshot& s) {
        auto it = s.reconnects_by_cause.find("network_error");
        return it != s.reconnects_by_cause.end() &&
               it->second >= static_cast<uint64_t>(attempts);
      },
      absl::Seconds(10)));
  return pipeline.Status(kStream);
}

// Item 8: header blocks are bounded (8 KiB); the connection fails with a
// clear error and the policy backs off.
TEST(IngestHostileTest, OversizedResponseHeadersFailTheConnection) {
  sim::Options so = SimOptions(10, /*initial=*/10);
  so.faults.header_bytes = 1 << 20;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  const StreamStatusSnapshot status = FailedAttempts(*pipeline, 3);
  pipeline->StopIngester();
  EXPECT_EQ(status.last_error,
            "the upstream's response headers exceed 8192 bytes");
  EXPECT_EQ(status.events_total, 0u);
  EXPECT_EQ(pipeline->committed_events(), 0u);
}

// Item 8: a chunk extension with no end used to be buffered whole (Beast
// 1.74 has no limit on the chunk header line), growing memory for as long as
// the upstream kept sending. The parser's buffer is now bounded (64 KiB).
TEST(IngestHostileTest, HugeChunkExtensionsFailTheConnection) {
  sim::Options so = SimOptions(10, /*initial=*/10);
  so.faults.chunk_extension_bytes = 1 << 20;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  const StreamStatusSnapshot status = FailedAttempts(*pipeline, 3);
  pipeline->StopIngester();
  EXPECT_EQ(status.last_error,
            "the upstream sent a chunk header (chunk extensions) or trailer "
            "over 65536 bytes");
  EXPECT_EQ(status.events_total, 0u);
  EXPECT_EQ(pipeline->committed_events(), 0u);
}

// Small chunk extensions are valid HTTP and still accepted.
TEST(IngestHostileTest, SmallChunkExtensionsAreAccepted) {
  constexpr int64_t kTotal = 50;
  sim::Options so = SimOptions(kTotal, /*initial=*/kTotal);
  so.faults.chunk_extension_bytes = 100;
  so.faults.header_bytes = 1000;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  pipeline->StopIngester();
  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
}

}  // namespace
}  // namespace chstream::ingest::testing
