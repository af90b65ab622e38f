// Integration tests of upstream ingestion under the simulator's fault knobs:
// chunking (random splits, coalescing, lone newlines), malformed lines,
// connections closed after N events in each style (with and without a
// partial last line), stalls, dead heartbeats with the idle watchdog, the
// maximum connection age and the per-key cap evicting the oldest stream.
// Each runs the real Ingester -> WriterSink -> EventWriter -> Store over
// real sockets on 127.0.0.1 and a SQLite file in TEST_TMPDIR, and checks
// that the store ends with exactly the simulator's log.
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "ingest/line_framer.h"
#include "ingest/simulator/simulator.h"
#include "tests/ingest/integration/ingest_harness.h"

namespace chstream::ingest::testing {
namespace {

using sim::CloseStyle;
using sim::Faults;

constexpr char kStream[] = "companies";

// ---------------------------------------------------------------------------
// Chunking: the bytes are the same, only the HTTP chunk boundaries change.

struct ChunkingCase {
  const char* name;
  Faults faults;
};

class ChunkingFaultTest : public ::testing::TestWithParam<ChunkingCase> {};

TEST_P(ChunkingFaultTest, StoresExactlyTheLog) {
  constexpr int64_t kTotal = 300;
  sim::Options so = SimOptions(kTotal, /*initial=*/150, /*rate=*/500);
  so.faults = GetParam().faults;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  const StreamStatusSnapshot live = pipeline->Status(kStream);
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);
  const std::vector<sim::Simulator::LogEntry> log = sim->Log(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, log));
  EXPECT_EQ(live.state, StreamState::kStreaming);
  EXPECT_EQ(live.last_http_status, 200);
  EXPECT_EQ(live.last_error, "");
  EXPECT_NE(live.connected_since, absl::InfinitePast());
  EXPECT_EQ(done.state, StreamState::kStopped);
  EXPECT_EQ(done.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(done.last_timepoint, log.back().timepoint);
  EXPECT_EQ(done.reconnects_total, 0u);
  EXPECT_EQ(done.malformed_total, 0u);
  EXPECT_EQ(done.duplicates_total, 0u);
  EXPECT_EQ(done.partial_lines_total, 0u);
  EXPECT_GT(done.heartbeats_total, 0u);
  // Every body byte is a line byte, a line's '\n' or a heartbeat.
  uint64_t line_bytes = 0;
  for (const auto& e : log) line_bytes += e.line.size() + 1;
  EXPECT_EQ(done.bytes_total, line_bytes + done.heartbeats_total);
  EXPECT_EQ(sim->GetStats().Requests("/companies", 200), 1);
}

INSTANTIATE_TEST_SUITE_P(
    Knobs, ChunkingFaultTest,
    ::testing::Values(
        ChunkingCase{"SplitRandom", Faults{.split_random = 17}},
        ChunkingCase{"Coalesce", Faults{.coalesce = true}},
        ChunkingCase{"LoneNewlineChunks", Faults{.lone_newline_chunks = true}},
        ChunkingCase{"AllChunkingKnobs", Faults{.split_random = 99,
                                                .coalesce = true,
                                                .lone_newline_chunks = true}}),
    [](const ::testing::TestParamInfo<ChunkingCase>& info) {
      return std::string(info.param.name);
    });

// ---------------------------------------------------------------------------
// Content: malformed lines go to dead_letters, with the right reasons.

TEST(IngestFaultsTest, MalformedLinesAreDeadLetteredAndEventsStayExact) {
  constexpr int64_t kTotal = 300;
  sim::Options so = SimOptions(kTotal, /*initial=*/100, /*rate=*/500);
  so.faults.malformed_every = 7;
  so.faults.split_random = 5;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  const std::vector<std::string> sent = sim->MalformedSent(kStream);
  ASSERT_EQ(sent.size(), static_cast<size_t>(kTotal / 7));
  EXPECT_EQ(sim->GetStats().malformed_sent.at(kStream),
            static_cast<int64_t>(sent.size()));
  EXPECT_EQ(done.malformed_total, sent.size());
  EXPECT_EQ(done.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(done.duplicates_total, 0u);

  ASSERT_OK_AND_ASSIGN(std::vector<storage::DeadLetter> dead,
                       pipeline->store()->ReadDeadLetters(10000));
  ASSERT_EQ(dead.size(), sent.size());
  std::reverse(dead.begin(), dead.end());  // oldest first, like `sent`
  const std::vector<sim::Simulator::LogEntry> log = sim->Log(kStream);
  for (size_t i = 0; i < dead.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("dead letter #", i, ": ", dead[i].reason));
    EXPECT_EQ(dead[i].stream, kStream);
    EXPECT_EQ(dead[i].raw, sent[i]);
    // Malformed line i follows real event 7 * (i + 1) and cycles through
    // five kinds of damage.
    const int64_t previous_timepoint = log[7 * (i + 1) - 1].timepoint;
    switch (i % 5) {
      case 0:  // truncated JSON
        EXPECT_TRUE(absl::StartsWith(dead[i].reason, "invalid JSON"));
        break;
      case 1:  // no event.timepoint
        EXPECT_EQ(dead[i].reason, "event.timepoint missing");
        EXPECT_EQ(dead[i].timepoint, std::nullopt);
        break;
      case 2:  // bad published_at
        EXPECT_TRUE(
            absl::StartsWith(dead[i].reason, "published_at not a timestamp"));
        EXPECT_EQ(dead[i].timepoint, previous_timepoint);
        break;
      case 3:  // invalid UTF-8
        EXPECT_TRUE(absl::StrContains(dead[i].reason, "UTF-8"));
        break;
      case 4:  // not an object
        EXPECT_EQ(dead[i].reason, "line is not a JSON object, got array");
        break;
    }
  }
}

TEST(IngestFaultsTest, OversizedLinesAreDeadLetteredWithTheirPrefix) {
  constexpr int64_t kTotal = 200;
  // Above the 64 KiB prefix kept: with a smaller cap the framer keeps only
  // what it had buffered when it noticed (less than its header promises).
  constexpr size_t kMaxLine = 80 << 10;
  sim::Options so = SimOptions(kTotal, /*initial=*/100, /*rate=*/500);
  so.generator.large_event_probability = 0.05;  // ~100 KB lines
  so.faults.split_random = 9;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  io.max_line_bytes = kMaxLine;
  ASSERT_OK(pipeline->StartIngester(io));
  ASSERT_TRUE(sim->WaitFor(
      [&](const sim::Stats& s) {
        auto it = s.events_sent.find(kStream);
        return it != s.events_sent.end() && it->second >= kTotal;
      },
      absl::Seconds(20)));
  std::vector<sim::Simulator::LogEntry> accepted, oversized;
  for (auto& e : sim->Log(kStream)) {
    (e.line.size() > kMaxLine ? oversized : accepted).push_back(std::move(e));
  }
  ASSERT_FALSE(oversized.empty());
  ASSERT_TRUE(pipeline->WaitForTimepoint(kStream, accepted.back().timepoint,
                                         absl::Seconds(10)));
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, accepted));
  EXPECT_EQ(done.malformed_total, oversized.size());
  EXPECT_EQ(done.events_total, accepted.size());
  ASSERT_OK_AND_ASSIGN(std::vector<storage::DeadLetter> dead,
                       pipeline->store()->ReadDeadLetters(1000));
  ASSERT_EQ(dead.size(), oversized.size());
  std::reverse(dead.begin(), dead.end());
  for (size_t i = 0; i < dead.size(); ++i) {
    const std::string& line = oversized[i].line;
    // (Compared as booleans: the lines are ~100 KB.)
    const std::string prefix =
        line.substr(0, LineFramer::kOversizedPrefixBytes);
    EXPECT_TRUE(dead[i].raw == prefix)
        << "raw is " << dead[i].raw.size() << " bytes, expected "
        << prefix.size() << "; first difference at "
        << std::mismatch(prefix.begin(), prefix.end(), dead[i].raw.begin(),
                         dead[i].raw.end())
                   .first -
               prefix.begin();
    EXPECT_EQ(
        dead[i].reason,
        absl::StrCat("line of ", line.size(),
                     " bytes exceeds --max_line_bytes=", kMaxLine, " (first ",
                     LineFramer::kOversizedPrefixBytes, " bytes kept)"));
  }
}

// ---------------------------------------------------------------------------
// Connections that end after N events, in each style.

struct CloseCase {
  CloseStyle style;
  bool mid_line;
};

std::string CloseCaseName(const ::testing::TestParamInfo<CloseCase>& info) {
  const char* style = info.param.style == CloseStyle::kReset      ? "Reset"
                      : info.param.style == CloseStyle::kTruncate ? "Truncate"
                                                                  : "Clean";
  return absl::StrCat(style, info.param.mid_line ? "MidLine" : "");
}

class CloseAfterEventsTest : public ::testing::TestWithParam<CloseCase> {};

TEST_P(CloseAfterEventsTest, ReconnectsFromLastTimepointAndStoresExactLog) {
  constexpr int64_t kTotal = 200;
  constexpr int kPerConnection = 40;
  const CloseCase c = GetParam();
  sim::Options so = SimOptions(kTotal, /*initial=*/kTotal);
  so.faults.close_after_events = kPerConnection;
  so.faults.close_style = c.style;
  so.faults.close_mid_line = c.mid_line;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  LogCapture logs;
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  // The connection after the last close waits at the head.
  ASSERT_TRUE(pipeline->WaitForStatus(
      kStream,
      [](const StreamStatusSnapshot& s) {
        return s.state == StreamState::kStreaming;
      },
      absl::Seconds(10)));
  const StreamStatusSnapshot live = pipeline->Status(kStream);
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);
  const std::vector<sim::Simulator::LogEntry> log = sim->Log(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, log));
  EXPECT_EQ(done.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(done.duplicates_total, 0u);
  EXPECT_EQ(done.malformed_total, 0u);
  EXPECT_EQ(live.last_http_status, 200);

  // Every reconnect asked for the next timepoint after the last one stored.
  const std::vector<std::string> targets = logs.Targets(kStream);
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(targets.front(),
            absl::StrCat("/companies?timepoint=", log.front().timepoint));
  for (size_t i = 1; i < targets.size(); ++i) {
    EXPECT_TRUE(absl::StartsWith(targets[i], "/companies?timepoint="))
        << targets[i];
  }
  const std::vector<LogCapture::Line> ended =
      logs.Find("upstream connection ended", kStream);
  const int64_t connections = sim->GetStats().Requests("/companies", 200);
  if (c.style == CloseStyle::kReset) {
    // An RST may discard bytes in flight; the client then asks again.
    EXPECT_GE(connections, kTotal / kPerConnection + 1);
    EXPECT_LE(done.partial_lines_total, static_cast<uint64_t>(connections - 1));
  } else {
    EXPECT_EQ(connections, kTotal / kPerConnection + 1);
    EXPECT_EQ(live.reconnects_total,
              static_cast<uint64_t>(kTotal / kPerConnection));
    // Every close but the last (after the final event) cut a line in half.
    EXPECT_EQ(
        done.partial_lines_total,
        c.mid_line ? static_cast<uint64_t>(kTotal / kPerConnection - 1) : 0u);
    // One "ended" line per close (Stop() logs none).
    ASSERT_EQ(ended.size(), static_cast<size_t>(kTotal / kPerConnection));
    for (int i = 0; i < kTotal / kPerConnection; ++i) {
      const std::string& json = ended[static_cast<size_t>(i)].json;
      if (c.style == CloseStyle::kClean) {
        EXPECT_EQ(JsonStringField(json, "outcome"), "end_of_stream") << json;
        // Ended quickly: backed off like a failure, not reconnected at once.
        EXPECT_TRUE(absl::StrContains(JsonStringField(json, "reason"),
                                      "stream ended after only"))
            << json;
      } else {
        EXPECT_EQ(JsonStringField(json, "outcome"), "network_error") << json;
        EXPECT_EQ(JsonStringField(json, "error"),
                  "connection closed before the end of the stream")
            << json;
      }
    }
  }
  EXPECT_EQ(static_cast<int64_t>(targets.size()), connections);
}

INSTANTIATE_TEST_SUITE_P(
    Styles, CloseAfterEventsTest,
    ::testing::Values(CloseCase{CloseStyle::kReset, false},
                      CloseCase{CloseStyle::kReset, true},
                      CloseCase{CloseStyle::kTruncate, false},
                      CloseCase{CloseStyle::kTruncate, true},
                      CloseCase{CloseStyle::kClean, false},
                      CloseCase{CloseStyle::kClean, true}),
    CloseCaseName);

// ---------------------------------------------------------------------------
// Lifecycle.

TEST(IngestFaultsTest, StallKeepsTheConnectionOnHeartbeatsThenDelivers) {
  constexpr int64_t kTotal = 200;
  sim::Options so = SimOptions(kTotal, /*initial=*/kTotal);
  so.faults.stall = true;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  io.idle_timeout = absl::Seconds(2);
  ASSERT_OK(pipeline->StartIngester(io));

  // Heartbeats flow, events do not.
  ASSERT_TRUE(pipeline->WaitForStatus(
      kStream,
      [](const StreamStatusSnapshot& s) {
        return s.state == StreamState::kStreaming && s.heartbeats_total >= 4;
      },
      absl::Seconds(10)));
  StreamStatusSnapshot stalled = pipeline->Status(kStream);
  EXPECT_EQ(stalled.events_total, 0u);
  EXPECT_EQ(stalled.reconnects_total, 0u);
  EXPECT_EQ(pipeline->store()->HeadPosition(), 0u);
  EXPECT_EQ(sim->GetStats().events_sent.count(kStream), 0u);

  sim->SetFaults(Faults{});  // un-stall
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  // Heartbeats go on on the same connection.
  ASSERT_TRUE(pipeline->WaitForStatus(
      kStream,
      [&](const StreamStatusSnapshot& s) {
        return s.heartbeats_total > stalled.heartbeats_total;
      },
      absl::Seconds(10)));
  const StreamStatusSnapshot live = pipeline->Status(kStream);
  pipeline->StopIngester();

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(live.state, StreamState::kStreaming);
  EXPECT_EQ(live.reconnects_total, 0u);  // the same connection throughout
  EXPECT_EQ(live.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_GT(live.heartbeats_total, stalled.heartbeats_total);
  EXPECT_EQ(sim->GetStats().Requests("/companies", 200), 1);
}

TEST(IngestFaultsTest, DeadHeartbeatsTripTheIdleWatchdogWhichReconnects) {
  constexpr int64_t kTotal = 200;
  sim::Options so = SimOptions(kTotal, /*initial=*/kTotal);
  // Nothing at all reaches the client (headers go out at once, so it is the
  // body watchdog that fires, not the header timeout).
  so.headers_on_first_byte = false;
  so.faults.stall = true;
  so.faults.heartbeats_die = true;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  io.idle_timeout = absl::Milliseconds(150);
  ASSERT_OK(pipeline->StartIngester(io));

  ASSERT_TRUE(pipeline->WaitForStatus(
      kStream,
      [](const StreamStatusSnapshot& s) { return s.reconnects_total >= 2; },
      absl::Seconds(10)));
  const StreamStatusSnapshot idle = pipeline->Status(kStream);
  EXPECT_EQ(idle.events_total, 0u);
  EXPECT_EQ(idle.heartbeats_total, 0u);
  EXPECT_TRUE(absl::StrContains(idle.last_error, "idle watchdog"))
      << idle.last_error;
  EXPECT_GE(sim->GetStats().Requests("/companies", 200), 2);

  // Events flow again (heartbeats stay dead): everything arrives exactly.
  sim->SetFaults(Faults{.heartbeats_die = true});
  ASSERT_TRUE(sim->WaitFor(
      [&](const sim::Stats& s) {
        auto it = s.events_sent.find(kStream);
        return it != s.events_sent.end() && it->second >= kTotal;
      },
      absl::Seconds(10)));
  ASSERT_TRUE(pipeline->WaitForTimepoint(
      kStream, sim->Log(kStream).back().timepoint, absl::Seconds(10)));
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(done.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(done.heartbeats_total, 0u);
  EXPECT_EQ(done.duplicates_total, 0u);
}

TEST(IngestFaultsTest, MaxConnectionAgeEndsCleanlyAndReconnectsQuickly) {
  constexpr int64_t kTotal = 400;
  sim::Options so = SimOptions(kTotal, /*initial=*/50, /*rate=*/400);
  so.faults.max_connection_age = absl::Milliseconds(250);
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  LogCapture logs;
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  IngesterOptions io = ClientOptions(*sim, {kStream});
  // A connection that lasted its full age is a healthy one.
  io.policy.healthy_after = absl::Milliseconds(100);
  io.policy.breaker_failures = 3;
  ASSERT_OK(pipeline->StartIngester(io));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  // Connections keep ageing out (heartbeats only) once the log is complete.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return logs.Find("upstream connection ended", kStream).size() >= 3;
      },
      absl::Seconds(10)));
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(done.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(done.duplicates_total, 0u);
  const std::vector<LogCapture::Line> ended =
      logs.Find("upstream connection ended", kStream);
  // Every end was a clean one, followed by the short reconnect delay (never
  // a backoff or the breaker).
  ASSERT_GE(ended.size(), 3u);
  for (const LogCapture::Line& line : ended) {
    const std::string& json = line.json;
    EXPECT_EQ(JsonStringField(json, "outcome"), "end_of_stream") << json;
    EXPECT_EQ(JsonStringField(json, "state"), "BACKING_OFF") << json;
    EXPECT_TRUE(absl::StrContains(JsonStringField(json, "reason"),
                                  "stream ended cleanly"))
        << json;
    const std::optional<double> retry_in = JsonNumberField(json, "retry_in");
    ASSERT_TRUE(retry_in.has_value()) << json;
    EXPECT_LE(*retry_in, 0.020 + 1e-6) << json;
  }
  // Every attempt got a 200, except perhaps the last: StopIngester may cut
  // off a reconnect that was logged but not yet answered (seen under
  // --config=tsan, where everything is ~10x slower).
  const int64_t answered = sim->GetStats().Requests("/companies", 200);
  const int64_t attempts = static_cast<int64_t>(logs.Targets(kStream).size());
  EXPECT_LE(answered, attempts);
  EXPECT_GE(answered, attempts - 1);
}

// A raw client of the simulator holding one stream of `key` open.
class RawStream {
 public:
  RawStream(uint16_t port, const std::string& path, const std::string& key)
      : socket_(io_) {
    namespace asio = boost::asio;
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    socket_.connect(endpoint);
    const std::string request = absl::StrCat(
        "GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic ",
        absl::Base64Escape(absl::StrCat(key, ":")), "\r\n\r\n");
    asio::write(socket_, asio::buffer(request));
  }
  void Close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
};

TEST(IngestFaultsTest, ConnectionCapEvictsTheOldestWhichReconnects) {
  constexpr int64_t kTotal = 300;
  sim::Options so = SimOptions(kTotal, /*initial=*/100, /*rate=*/200);
  so.max_connections_per_key = 1;
  so.cap_mode = sim::CapMode::kEvictOldest;
  ASSERT_OK_AND_ASSIGN(auto sim, sim::Simulator::Start(so));
  LogCapture logs;
  ASSERT_OK_AND_ASSIGN(auto pipeline, Pipeline::Open(TestDbPath()));
  ASSERT_OK(pipeline->StartIngester(ClientOptions(*sim, {kStream})));
  ASSERT_TRUE(pipeline->WaitForCommittedEvents(120, absl::Seconds(10)));

  // Another process with the same key opens a stream: ours, the oldest, is
  // ended by the upstream.
  RawStream other(sim->port(), "/filings", kKey);
  ASSERT_TRUE(sim->WaitFor([](const sim::Stats& s) { return s.evictions >= 1; },
                           absl::Seconds(10)));
  ASSERT_TRUE(pipeline->WaitForStatus(
      kStream,
      [](const StreamStatusSnapshot& s) { return s.reconnects_total >= 1; },
      absl::Seconds(10)));
  other.Close();

  // Our stream comes back (evicting the other one if it is still open).
  ASSERT_TRUE(sim->WaitFor(
      [](const sim::Stats& s) { return s.Requests("/companies", 200) >= 2; },
      absl::Seconds(10)));
  ASSERT_TRUE(RunToCompletion(*sim, *pipeline, kStream, kTotal));
  pipeline->StopIngester();
  const StreamStatusSnapshot done = pipeline->Status(kStream);

  EXPECT_TRUE(StoreMatchesLog(*pipeline->store(), kStream, sim->Log(kStream)));
  EXPECT_EQ(done.events_total, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(done.duplicates_total, 0u);
  const std::vector<LogCapture::Line> ended =
      logs.Find("upstream connection ended", kStream);
  ASSERT_FALSE(ended.empty());
  EXPECT_EQ(JsonStringField(ended.front().json, "outcome"), "end_of_stream")
      << ended.front().json;
  EXPECT_GE(sim->GetStats().evictions, 1);
  // The reconnect resumed after what the evicted connection delivered.
  const std::vector<std::string> targets = logs.Targets(kStream);
  ASSERT_GE(targets.size(), 2u);
  EXPECT_NE(targets[1], targets[0]);
  EXPECT_TRUE(absl::StartsWith(targets[1], "/companies?timepoint="))
      << targets[1];
}

}  // namespace
}  // namespace chstream::ingest::testing
