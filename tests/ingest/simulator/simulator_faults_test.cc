// Every fault knob of the simulator, observed on the wire by a real client.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "tests/ingest/simulator/test_http_client.h"

namespace chstream::ingest::sim {
namespace {

using ::chstream::ingest::sim::testing::ResponseHead;
using ::chstream::ingest::sim::testing::TestHttpClient;
using ::chstream::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAreArray;

constexpr absl::Duration kTimeout = absl::Seconds(10);
constexpr char kKey[] = "test-key";

// `count` events ready on the companies stream, nothing else produced.
Options WithEvents(int count) {
  Options options;
  options.keys = {kKey};
  options.heartbeat_interval = absl::Milliseconds(50);
  options.streams = {"companies"};
  options.initial_events_per_stream = count;
  options.max_events_per_stream = count;
  return options;
}

// A counter from a Stats map, 0 when absent.
int64_t Count(const std::map<std::string, int64_t>& counters,
              const std::string& name) {
  auto it = counters.find(name);
  return it == counters.end() ? 0 : it->second;
}

std::vector<std::string> Lines(const std::vector<Simulator::LogEntry>& log,
                               size_t from = 0, size_t to = SIZE_MAX) {
  std::vector<std::string> lines;
  for (size_t i = from; i < std::min(to, log.size()); ++i) {
    lines.push_back(log[i].line);
  }
  return lines;
}

// Connects, sends the GET and reads a 200 head.
std::unique_ptr<TestHttpClient> Stream(const Simulator& sim,
                                       const std::string& target) {
  auto client = TestHttpClient::Connect(sim.port());
  EXPECT_OK(client.status());
  if (!client.ok()) return nullptr;
  EXPECT_OK((*client)->Get(target, kKey));
  absl::StatusOr<ResponseHead> head = (*client)->ReadHead(kTimeout);
  EXPECT_OK(head.status());
  if (!head.ok()) return nullptr;
  EXPECT_EQ(head->status, 200);
  if (head->status != 200) return nullptr;
  return *std::move(client);
}

std::string FromStart() { return "/companies?timepoint=82000000"; }

bool IsUtf8Continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

TEST(SimulatorFaultsTest, SplitRandomCutsLinesAnywhereIncludingInsideUtf8) {
  Options options = WithEvents(100);
  options.generator.non_ascii_probability = 1.0;
  options.faults.split_random = 7;
  options.heartbeat_interval = absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(100, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"))));
  const auto& chunks = client->chunks();
  EXPECT_GT(chunks.size(), 200u);
  int inside_utf8 = 0, not_at_line_end = 0;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    if (chunks[i].back() != '\n') ++not_at_line_end;
    if (IsUtf8Continuation(chunks[i + 1].front())) ++inside_utf8;
  }
  EXPECT_GT(not_at_line_end, 100);
  EXPECT_GT(inside_utf8, 50);
}

TEST(SimulatorFaultsTest, CoalesceSendsManyLinesPerChunk) {
  Options options = WithEvents(50);
  options.faults.coalesce = true;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(50, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"))));
  size_t most_lines = 0;
  for (const std::string& chunk : client->chunks()) {
    most_lines = std::max<size_t>(most_lines,
                                  std::count(chunk.begin(), chunk.end(), '\n'));
  }
  EXPECT_GE(most_lines, 10u);
}

TEST(SimulatorFaultsTest, LoneNewlineChunks) {
  Options options = WithEvents(20);
  options.faults.lone_newline_chunks = true;
  options.heartbeat_interval = absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(20, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"))));
  const auto& chunks = client->chunks();
  ASSERT_EQ(chunks.size(), 40u);
  for (size_t i = 0; i < chunks.size(); i += 2) {
    EXPECT_EQ(chunks[i].find('\n'), std::string::npos);
    EXPECT_EQ(chunks[i + 1], "\n");
  }
}

TEST(SimulatorFaultsTest, DefaultIsOneChunkPerLine) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(WithEvents(20)));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(20, kTimeout));
  const auto log = sim->Log("companies");
  std::vector<std::string> data_chunks;
  for (const std::string& chunk : client->chunks()) {
    if (chunk != "\n") data_chunks.push_back(chunk);
  }
  ASSERT_EQ(data_chunks.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(data_chunks[i], log[i].line + "\n");
}

// Verifies that heartbeats keep their period in the middle of a busy stream
// and always fall between complete lines.
TEST(SimulatorFaultsTest, HeartbeatsAreNotResetByDataAndSitBetweenLines) {
  Options options;
  options.keys = {kKey};
  options.heartbeat_interval = absl::Milliseconds(20);
  options.streams = {"companies"};
  options.stream_rates = {{"companies", 500}};
  options.max_events_per_stream = 250;
  options.faults.split_random = 3;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  int heartbeats = 0;
  ASSERT_OK_AND_ASSIGN(auto events,
                       client->ReadEvents(250, kTimeout, &heartbeats));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"))));
  // ~0.5 s of traffic with a 20 ms period: heartbeats flowed throughout.
  EXPECT_GE(heartbeats, 5);
}

TEST(SimulatorFaultsTest, MalformedLinesAreExtraLinesBetweenRealEvents) {
  Options options = WithEvents(30);
  options.faults.malformed_every = 3;
  options.heartbeat_interval = absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto lines, client->ReadEvents(40, kTimeout));
  const auto log = sim->Log("companies");
  std::vector<std::string> real, bad;
  for (size_t i = 0; i < lines.size(); ++i) {
    (i % 4 == 3 ? bad : real).push_back(lines[i]);
  }
  EXPECT_THAT(real, ElementsAreArray(Lines(log)));
  EXPECT_THAT(bad, ElementsAreArray(sim->MalformedSent("companies")));
  ASSERT_EQ(bad.size(), 10u);
  // The five kinds: truncated JSON, no timepoint, bad published_at, invalid
  // UTF-8, not an object.
  EXPECT_FALSE(absl::EndsWith(bad[0], "}}"));
  EXPECT_FALSE(absl::StrContains(bad[1], "\"timepoint\""));
  EXPECT_TRUE(absl::StrContains(bad[2], "\"published_at\":\"not-a-date\""));
  EXPECT_TRUE(absl::StrContains(bad[3], "\xC3\x28"));
  EXPECT_EQ(bad[4], R"(["not","an","event"])");
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) {
        auto it = s.malformed_sent.find("companies");
        return it != s.malformed_sent.end() && it->second == 10 &&
               Count(s.events_sent, "companies") == 30;
      },
      kTimeout));
}

TEST(SimulatorFaultsTest, CloseAfterEventsTruncated) {
  Options options = WithEvents(20);
  options.faults.close_after_events = 5;
  options.faults.close_style = CloseStyle::kTruncate;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(5, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"), 0, 5)));
  EXPECT_THAT(client->ReadEvents(1, kTimeout),
              StatusIs(absl::StatusCode::kUnavailable, "eof after 0 events"));
  EXPECT_EQ(client->partial_line(), "");
}

TEST(SimulatorFaultsTest, CloseAfterEventsMidLineLeavesAPartialLine) {
  Options options = WithEvents(20);
  options.faults.close_after_events = 5;
  options.faults.close_style = CloseStyle::kTruncate;
  options.faults.close_mid_line = true;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(5, kTimeout));
  EXPECT_THAT(client->ReadEvents(1, kTimeout),
              StatusIs(absl::StatusCode::kUnavailable, _));
  const std::string next = sim->Log("companies")[5].line;
  EXPECT_EQ(client->partial_line(), next.substr(0, next.size() / 2));
}

TEST(SimulatorFaultsTest, CloseAfterEventsReset) {
  Options options = WithEvents(20);
  options.faults.close_after_events = 5;
  options.faults.close_style = CloseStyle::kReset;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  // An RST may overtake data still in flight, so only "at most 5, then a
  // reset" is certain.
  absl::StatusOr<std::vector<std::string>> events =
      client->ReadEvents(6, kTimeout);
  EXPECT_THAT(events, StatusIs(absl::StatusCode::kAborted, _));
}

TEST(SimulatorFaultsTest, CloseAfterEventsCleanEndsWithTheLastChunk) {
  Options options = WithEvents(20);
  options.faults.close_after_events = 5;
  options.faults.close_style = CloseStyle::kClean;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(5, kTimeout));
  EXPECT_THAT(client->ReadLine(kTimeout),
              StatusIs(absl::StatusCode::kOutOfRange, "end of body"));
  EXPECT_THAT(client->ReadChunk(kTimeout),
              StatusIs(absl::StatusCode::kUnavailable, "eof"));
  // The next connection resumes where the client left off.
  const auto log = sim->Log("companies");
  auto again =
      Stream(*sim, absl::StrCat("/companies?timepoint=", log[4].timepoint + 1));
  ASSERT_NE(again, nullptr);
  ASSERT_OK_AND_ASSIGN(auto more, again->ReadEvents(5, kTimeout));
  EXPECT_THAT(more, ElementsAreArray(Lines(log, 5, 10)));
}

TEST(SimulatorFaultsTest, StallStopsEventsButNotHeartbeatsUntilLifted) {
  Options options = WithEvents(10);
  options.faults.stall = true;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
    EXPECT_EQ(line, "");
  }
  EXPECT_EQ(sim->GetStats().events_sent.count("companies"), 0u);
  sim->SetFaults(Faults{});
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(10, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"))));
}

TEST(SimulatorFaultsTest, PerStreamFaultsOverrideTheGlobalOnes) {
  Options options = WithEvents(5);
  options.streams = {"companies", "filings"};
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  Faults stall;
  stall.stall = true;
  sim->SetFaults("filings", stall);
  auto companies = Stream(*sim, FromStart());
  auto filings = Stream(*sim, "/filings?timepoint=168500000");
  ASSERT_NE(companies, nullptr);
  ASSERT_NE(filings, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, companies->ReadEvents(5, kTimeout));
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string line, filings->ReadLine(kTimeout));
    EXPECT_EQ(line, "");
  }
  sim->SetFaults(stall);  // global: filings keeps its own (also stalled)
  sim->ClearStreamFaults("filings");  // now filings follows the global stall
  ASSERT_OK_AND_ASSIGN(std::string line, filings->ReadLine(kTimeout));
  EXPECT_EQ(line, "");
  sim->SetFaults(Faults{});
  ASSERT_OK_AND_ASSIGN(auto filings_events, filings->ReadEvents(5, kTimeout));
  EXPECT_THAT(filings_events, ElementsAreArray(Lines(sim->Log("filings"))));
}

TEST(SimulatorFaultsTest, HeartbeatsCanDie) {
  Options options = WithEvents(0);
  options.headers_on_first_byte = false;
  options.faults.heartbeats_die = true;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  // Six heartbeat periods of silence.
  EXPECT_THAT(client->ReadChunk(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, _));
  sim->SetFaults(Faults{});
  ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
  EXPECT_EQ(line, "");
}

TEST(SimulatorFaultsTest, FailFirstAttemptsWithHaproxyBodies) {
  Options options = WithEvents(1);
  options.faults.fail_first_attempts = 2;
  options.faults.fail_status = 503;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
    ASSERT_OK(client->Get(FromStart(), kKey));
    ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
    EXPECT_EQ(head.status, 503);
    EXPECT_EQ(head.Header("content-type"), "text/html");
    EXPECT_EQ(head.Header("cache-control"), "no-cache");
    EXPECT_EQ(head.Header("retry-after"), "");
    ASSERT_OK_AND_ASSIGN(std::string body,
                         client->ReadFixedBody(head, kTimeout));
    EXPECT_EQ(body,
              "<html><body><h1>503 Service Unavailable</h1>\nNo server is "
              "available to handle this request.\n</body></html>");
  }
  EXPECT_NE(Stream(*sim, FromStart()), nullptr);
  EXPECT_EQ(sim->GetStats().Requests("/companies", 503), 2);

  struct Case {
    int status;
    std::string body;
  };
  for (const Case& c : std::vector<Case>{
           {502,
            "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an "
            "invalid or incomplete response.\n</body></html>"},
           {504,
            "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't "
            "respond in time.\n</body></html>"},
           {500,
            "<html><body><h1>500 Internal Server Error</h1>\nAn internal "
            "server error occurred.\n</body></html>"},
           {401, R"({"error":"Invalid Authorization","type":"ch:service"})"},
       }) {
    Faults faults;
    faults.fail_first_attempts = 1;
    faults.fail_status = c.status;
    sim->SetFaults("filings", faults);
    ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
    ASSERT_OK(client->Get("/filings", kKey));
    ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
    EXPECT_EQ(head.status, c.status);
    ASSERT_OK_AND_ASSIGN(std::string body,
                         client->ReadFixedBody(head, kTimeout));
    EXPECT_EQ(body, c.body);
    // Only the filings stream is affected.
    EXPECT_NE(Stream(*sim, "/companies"), nullptr);
  }
}

TEST(SimulatorFaultsTest, FailuresCanBeDelayed) {
  Options options = WithEvents(0);
  options.faults.fail_first_attempts = 1;
  options.faults.fail_status = 504;
  options.faults.fail_delay = absl::Milliseconds(200);
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
  const absl::Time start = absl::Now();
  ASSERT_OK(client->Get("/companies", kKey));
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 504);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
}

TEST(SimulatorFaultsTest, RetryAfterOnlyWhenConfigured) {
  Options options = WithEvents(0);
  options.faults.fail_first_attempts = 1;
  options.faults.fail_status = 429;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  {
    ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
    ASSERT_OK(client->Get("/companies", kKey));
    ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
    EXPECT_EQ(head.status, 429);
    EXPECT_EQ(head.Header("retry-after"), "");
  }
  Faults faults = options.faults;
  faults.retry_after_seconds = 60;
  sim->SetFaults(faults);
  ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
  ASSERT_OK(client->Get("/companies", kKey));
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 429);
  EXPECT_EQ(head.Header("retry-after"), "60");
}

TEST(SimulatorFaultsTest, ConnectionCapRejectsWith429) {
  Options options = WithEvents(0);
  options.max_connections_per_key = 2;
  options.faults.retry_after_seconds = 61;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto a = Stream(*sim, "/companies");
  auto b = Stream(*sim, "/filings");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_OK_AND_ASSIGN(auto c, TestHttpClient::Connect(sim->port()));
  ASSERT_OK(c->Get("/officers", kKey));
  ASSERT_OK_AND_ASSIGN(ResponseHead head, c->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 429);
  EXPECT_EQ(head.Header("retry-after"), "61");
  a->Close();
  ASSERT_TRUE(sim->WaitFor(
      [](const Stats& s) { return s.OpenConnections() == 1; }, kTimeout));
  EXPECT_NE(Stream(*sim, "/officers"), nullptr);
}

TEST(SimulatorFaultsTest, ConnectionCapEvictsTheOldest) {
  Options options = WithEvents(0);
  options.max_connections_per_key = 1;
  options.cap_mode = CapMode::kEvictOldest;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto old_client = Stream(*sim, "/companies");
  ASSERT_NE(old_client, nullptr);
  auto new_client = Stream(*sim, "/filings");
  ASSERT_NE(new_client, nullptr);
  // The old one ends cleanly (heartbeats may come first).
  absl::Status status;
  for (int i = 0; i < 1000 && status.ok(); ++i) {
    status = old_client->ReadLine(kTimeout).status();
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kOutOfRange, "end of body"));
  ASSERT_OK_AND_ASSIGN(std::string line, new_client->ReadLine(kTimeout));
  EXPECT_EQ(line, "");
  const Stats stats = sim->GetStats();
  EXPECT_EQ(stats.evictions, 1);
  EXPECT_EQ(stats.connections_by_key.at(kKey), 1);
}

TEST(SimulatorFaultsTest, MaxConnectionAgeEndsCleanly) {
  Options options = WithEvents(3);
  options.faults.max_connection_age = absl::Milliseconds(300);
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  int heartbeats = 0;
  ASSERT_OK_AND_ASSIGN(auto events,
                       client->ReadEvents(3, kTimeout, &heartbeats));
  absl::Status status;
  for (int i = 0; i < 1000 && status.ok(); ++i) {
    status = client->ReadLine(kTimeout).status();
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kOutOfRange, "end of body"));
  EXPECT_THAT(client->ReadChunk(kTimeout),
              StatusIs(absl::StatusCode::kUnavailable, "eof"));
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) { return s.OpenConnections() == 0; }, kTimeout));
}

TEST(SimulatorFaultsTest, ShorteningTheMaxAgeAtRunTimeEndsOldConnections) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(WithEvents(0)));
  auto client = Stream(*sim, "/companies");
  ASSERT_NE(client, nullptr);
  Faults faults;
  faults.max_connection_age = absl::Milliseconds(1);
  sim->SetFaults(faults);
  absl::Status status;
  for (int i = 0; i < 1000 && status.ok(); ++i) {
    status = client->ReadLine(kTimeout).status();
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kOutOfRange, "end of body"));
}

// The "nightly cut": every open connection ends at once, in each style.
TEST(SimulatorFaultsTest, DisconnectAllEndsEveryConnection) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(WithEvents(0)));
  struct Case {
    CloseStyle style;
    absl::StatusCode code;
  };
  for (const Case& c :
       {Case{CloseStyle::kClean, absl::StatusCode::kOutOfRange},
        Case{CloseStyle::kTruncate, absl::StatusCode::kUnavailable},
        Case{CloseStyle::kReset, absl::StatusCode::kAborted}}) {
    auto a = Stream(*sim, "/companies");
    auto b = Stream(*sim, "/filings");
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    sim->DisconnectAll(c.style);
    for (auto* client : {a.get(), b.get()}) {
      absl::Status status;
      for (int i = 0; i < 1000 && status.ok(); ++i) {
        status = client->ReadLine(kTimeout).status();
      }
      EXPECT_EQ(status.code(), c.code) << status;
    }
    EXPECT_TRUE(sim->WaitFor(
        [](const Stats& s) { return s.OpenConnections() == 0; }, kTimeout));
  }
}

TEST(SimulatorFaultsTest, TinyRetentionWithRateZeroStillDelivers) {
  Options options;
  options.keys = {kKey};
  options.streams = {"companies"};
  options.companies_rate = 0;
  options.retention_events = 3;
  options.max_events_per_stream = 100;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Stream(*sim, FromStart());
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(100, kTimeout));
  EXPECT_THAT(sim->Log("companies"), ::testing::SizeIs(3));
  EXPECT_EQ(events.back(), sim->Log("companies").back().line);
  options.retention_events = 0;
  EXPECT_THAT(Simulator::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST(SimulatorFaultsTest, ReconnectRateLimitUsesTheInjectedClock) {
  FakeClock clock;
  Options options = WithEvents(0);
  options.clock = &clock;
  options.max_connects_per_minute = 3;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  for (int i = 0; i < 3; ++i) {
    auto client = Stream(*sim, "/companies");
    ASSERT_NE(client, nullptr);
    clock.Advance(absl::Seconds(10));
  }
  auto status_of_next = [&] {
    auto client = TestHttpClient::Connect(sim->port());
    EXPECT_OK(client.status());
    EXPECT_OK((*client)->Get("/companies", kKey));
    absl::StatusOr<ResponseHead> head = (*client)->ReadHead(kTimeout);
    EXPECT_OK(head.status());
    return head.ok() ? head->status : 0;
  };
  EXPECT_EQ(status_of_next(), 429);  // 4 within a minute
  clock.Advance(absl::Seconds(21));  // the first has left the window
  EXPECT_EQ(status_of_next(), 429);  // ... but the rejected one counts too
  clock.Advance(absl::Seconds(61));
  EXPECT_EQ(status_of_next(), 200);
}

TEST(SimulatorFaultsTest, SlowReadersAreDisconnected) {
  Options options;
  options.keys = {kKey};
  options.streams = {"companies"};
  options.companies_rate = 0;  // as fast as the socket takes them
  options.retention_events = 50'000;
  options.generator.profile_only = true;
  options.faults.slow_reader_timeout = absl::Milliseconds(200);
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
  ASSERT_OK(client->Get(FromStart(), kKey));
  // Never read: the socket buffers fill, the write stalls, the server gives
  // up on us.
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) {
        return s.slow_reader_disconnects == 1 && s.OpenConnections() == 0;
      },
      absl::Seconds(30)));
}

}  // namespace
}  // namespace chstream::ingest::sim
