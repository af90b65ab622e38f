// Protocol tests for the simulator over real sockets on 127.0.0.1: routing,
// auth, chunked streaming with heartbeats, timepoint replay, 416s, stats.
#include "ingest/simulator/simulator.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/ingest/simulator/test_http_client.h"

namespace chstream::ingest::sim {
namespace {

using ::chstream::ingest::sim::testing::ResponseHead;
using ::chstream::ingest::sim::testing::TestHttpClient;
using ::chstream::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(10);
constexpr char kKey[] = "test-key";

Options BaseOptions() {
  Options options;
  options.keys = {kKey, "second-key"};
  options.heartbeat_interval = absl::Milliseconds(50);
  options.max_events_per_stream = 0;  // nothing unless a test asks
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

// Connects and sends one GET.
std::unique_ptr<TestHttpClient> Request(const Simulator& sim,
                                        const std::string& target,
                                        std::optional<std::string> key = kKey) {
  auto client = TestHttpClient::Connect(sim.port());
  EXPECT_OK(client.status());
  if (!client.ok()) return nullptr;
  EXPECT_OK((*client)->Get(target, key));
  return *std::move(client);
}

// The status of a one-off request (and its body when it has one).
std::pair<int, std::string> StatusOf(const Simulator& sim,
                                     const std::string& target,
                                     std::optional<std::string> key = kKey) {
  auto client = Request(sim, target, key);
  if (!client) return {0, ""};
  absl::StatusOr<ResponseHead> head = client->ReadHead(kTimeout);
  EXPECT_OK(head.status());
  if (!head.ok()) return {0, ""};
  std::string body;
  if (!head->Header("content-length").empty()) {
    absl::StatusOr<std::string> fixed = client->ReadFixedBody(*head, kTimeout);
    EXPECT_OK(fixed.status());
    if (fixed.ok()) body = *fixed;
  }
  return {head->status, body};
}

TEST(SimulatorTest, StartRejectsBadOptions) {
  Options no_keys = BaseOptions();
  no_keys.keys.clear();
  EXPECT_THAT(Simulator::Start(no_keys),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key")));
  Options bad_stream = BaseOptions();
  bad_stream.streams = {"insolvency"};
  EXPECT_THAT(
      Simulator::Start(bad_stream),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("insolvency")));
  Options half_tls = BaseOptions();
  half_tls.tls_cert_pem = "x";
  EXPECT_THAT(Simulator::Start(half_tls),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  Options bad_pem = BaseOptions();
  bad_pem.tls_cert_pem = "not a certificate";
  bad_pem.tls_key_pem = "not a key";
  EXPECT_THAT(
      Simulator::Start(bad_pem),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("certificate")));
  Options bad_status = BaseOptions();
  bad_status.invalid_timepoint_status = 418;
  EXPECT_THAT(Simulator::Start(bad_status),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  Options bad_fault = BaseOptions();
  bad_fault.faults.fail_first_attempts = 1;
  bad_fault.faults.fail_status = 418;
  EXPECT_THAT(Simulator::Start(bad_fault),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST(SimulatorTest, UrlAndPort) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  EXPECT_GT(sim->port(), 0);
  EXPECT_EQ(sim->url(), absl::StrCat("http://127.0.0.1:", sim->port()));
}

TEST(SimulatorTest, UnknownPathsAndMethodsAre404) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  EXPECT_EQ(StatusOf(*sim, "/nope"),
            std::make_pair(404, std::string("404 page not found\n")));
  EXPECT_EQ(StatusOf(*sim, "/insolvency").first,
            404);  // the real one is -cases
  EXPECT_EQ(StatusOf(*sim, "/companies/extra").first, 404);
  EXPECT_EQ(StatusOf(*sim, "companies").first, 404);
  EXPECT_EQ(StatusOf(*sim, "//companies").first, 404);
  EXPECT_EQ(StatusOf(*sim, "/").first, 404);
  // Only GET.
  auto client = TestHttpClient::Connect(sim->port());
  ASSERT_OK(client.status());
  ASSERT_OK((*client)->Get("/companies", kKey, "", "POST"));
  ASSERT_OK_AND_ASSIGN(ResponseHead head, (*client)->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 404);
  EXPECT_EQ(head.Header("connection"), "close");
  const Stats stats = sim->GetStats();
  EXPECT_EQ(stats.Requests("/nope", 404), 1);
  EXPECT_EQ(stats.Requests("/companies", 404), 1);
  EXPECT_EQ(stats.RequestsWithStatus(404), 7);
}

TEST(SimulatorTest, MissingOrWrongKeyIs401WithTheUpstreamBody) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  const std::string kBody =
      R"({"error":"Invalid Authorization","type":"ch:service"})";
  for (std::optional<std::string> key :
       {std::optional<std::string>(), std::optional<std::string>("wrong"),
        std::optional<std::string>("")}) {
    auto client = Request(*sim, "/companies", key);
    ASSERT_NE(client, nullptr);
    ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
    EXPECT_EQ(head.status, 401);
    EXPECT_EQ(head.Header("content-type"), "application/json");
    ASSERT_OK_AND_ASSIGN(std::string body,
                         client->ReadFixedBody(head, kTimeout));
    EXPECT_EQ(body, kBody);
  }
  // "Basic base64(key)" without the colon is invalid, as the docs warn.
  auto client = TestHttpClient::Connect(sim->port());
  ASSERT_OK(client.status());
  ASSERT_OK((*client)->WriteRaw(
      "GET /companies HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Basic dGVzdC1rZXk=\r\n\r\n"));  // "test-key"
  ASSERT_OK_AND_ASSIGN(ResponseHead head, (*client)->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 401);
  EXPECT_EQ(sim->GetStats().Requests("/companies", 401), 4);
}

TEST(SimulatorTest, AnyPasswordIsAcceptedForAValidKey) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  for (const char* password : {"", "anything", "with:colon"}) {
    auto client = TestHttpClient::Connect(sim->port());
    ASSERT_OK(client.status());
    ASSERT_OK((*client)->Get("/filings", "second-key", password));
    ASSERT_OK_AND_ASSIGN(ResponseHead head, (*client)->ReadHead(kTimeout));
    EXPECT_EQ(head.status, 200) << password;
  }
}

TEST(SimulatorTest, StreamsChunkedBodyWithHeartbeats) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  auto client = Request(*sim, "/persons-with-significant-control-statements");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("transfer-encoding"), "chunked");
  EXPECT_EQ(head.Header("content-length"), "");
  EXPECT_EQ(head.Header("content-type"), "text/plain; charset=utf-8");
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
    EXPECT_EQ(line, "");
  }
  for (const std::string& chunk : client->chunks()) EXPECT_EQ(chunk, "\n");
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) {
        auto it = s.heartbeats_sent.find(
            "persons-with-significant-control-statements");
        return it != s.heartbeats_sent.end() && it->second >= 3;
      },
      kTimeout));
}

// Verifies that, as CH's Go front end does, nothing (not even the status
// line) is sent before the first body byte.
TEST(SimulatorTest, HeadersWaitForTheFirstBodyByte) {
  Options options = BaseOptions();
  options.heartbeat_interval = absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Request(*sim, "/companies");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(sim->WaitFor(
      [](const Stats& s) { return s.Requests("/companies", 200) == 1; },
      kTimeout));
  EXPECT_THAT(client->ReadHead(absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, _));
  ASSERT_OK(sim->GenerateEvents("companies", 1).status());
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
  EXPECT_EQ(line, sim->Log("companies").at(0).line);
}

TEST(SimulatorTest, HeadersCanBeSentImmediately) {
  Options options = BaseOptions();
  options.heartbeat_interval = absl::Hours(1);
  options.headers_on_first_byte = false;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Request(*sim, "/companies");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  EXPECT_EQ(head.status, 200);
  EXPECT_THAT(client->ReadChunk(absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, _));
}

TEST(SimulatorTest, ReplaysInclusivelyFromATimepointThenFollowsLive) {
  Options options = BaseOptions();
  options.initial_events_per_stream = 30;
  options.max_events_per_stream = 30;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  const auto log = sim->Log("filings");
  ASSERT_EQ(log.size(), 30u);
  EXPECT_EQ(sim->HeadTimepoint("filings"), log.back().timepoint);
  auto client =
      Request(*sim, absl::StrCat("/filings?timepoint=", log[10].timepoint));
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(20, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(log, 10)));
  // Caught up: heartbeats only, until new events arrive.
  ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
  EXPECT_EQ(line, "");
  ASSERT_OK(sim->GenerateEvents("filings", 3).status());
  ASSERT_OK_AND_ASSIGN(auto live, client->ReadEvents(3, kTimeout));
  EXPECT_THAT(live, ElementsAreArray(Lines(sim->Log("filings"), 30)));
}

TEST(SimulatorTest, ATimepointInAGapStartsAtTheNextEvent) {
  Options options = BaseOptions();
  options.generator.gap_probability = 0;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  ASSERT_OK(sim->GenerateEvents("charges", 5).status());
  ASSERT_OK(sim->SkipTimepoints("charges", 10));
  ASSERT_OK(sim->GenerateEvents("charges", 5).status());
  const auto log = sim->Log("charges");
  ASSERT_EQ(log.size(), 10u);
  EXPECT_EQ(log[5].timepoint, log[4].timepoint + 11);
  auto client =
      Request(*sim, absl::StrCat("/charges?timepoint=", log[4].timepoint + 3));
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(5, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(log, 5)));
}

TEST(SimulatorTest, NoTimepointTailsFromTheHead) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  ASSERT_OK(sim->GenerateEvents("officers", 5).status());
  auto client = Request(*sim, "/officers");
  ASSERT_NE(client, nullptr);
  // The first heartbeat proves the request was admitted before what follows.
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK(sim->GenerateEvents("officers", 3).status());
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(3, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("officers"), 5)));
}

TEST(SimulatorTest, HeadPlusOneWaitsForTheNextEvent) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  ASSERT_OK_AND_ASSIGN(int64_t head_timepoint,
                       sim->GenerateEvents("companies", 4));
  auto client =
      Request(*sim, absl::StrCat("/companies?timepoint=", head_timepoint + 1));
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK(sim->GenerateEvents("companies", 1).status());
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(1, kTimeout));
  EXPECT_EQ(events[0], sim->Log("companies").back().line);
}

TEST(SimulatorTest, ABrandNewStreamAcceptsItsFirstTimepoint) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  EXPECT_EQ(sim->HeadTimepoint("companies"), 0);
  EXPECT_EQ(StatusOf(*sim, "/companies?timepoint=82000000").first, 200);
  EXPECT_EQ(StatusOf(*sim, "/companies?timepoint=81999999").first, 416);
  EXPECT_EQ(StatusOf(*sim, "/companies?timepoint=82000001").first, 416);
}

TEST(SimulatorTest, BadTimepointsAre416) {
  Options options = BaseOptions();
  options.initial_events_per_stream = 30;
  options.max_events_per_stream = 30;
  options.retention_events = 10;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  const auto log = sim->Log("companies");
  ASSERT_EQ(log.size(), 10u);
  const int64_t oldest = log.front().timepoint;
  const int64_t head = log.back().timepoint;
  for (const std::string& timepoint :
       {absl::StrCat(oldest - 1), std::string("-5"), std::string("abc"),
        std::string(""), std::string("12x"), std::string("+5"),
        absl::StrCat(head + 2), std::string("99999999999999999999999"),
        std::string("0")}) {
    EXPECT_EQ(StatusOf(*sim, "/companies?timepoint=" + timepoint),
              std::make_pair(416, std::string()))
        << timepoint;
  }
  EXPECT_EQ(StatusOf(*sim, "/companies?timepoint").first, 416);
  EXPECT_EQ(sim->GetStats().Requests("/companies", 416), 10);

  // The oldest retained timepoint is still served.
  auto client =
      Request(*sim, absl::StrCat("/companies?other=1&timepoint=", oldest));
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead ok_head, client->ReadHead(kTimeout));
  ASSERT_EQ(ok_head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(10, kTimeout));
  EXPECT_THAT(events, ElementsAreArray(Lines(log)));
}

size_t LogBytes(const std::vector<Simulator::LogEntry>& log) {
  size_t bytes = 0;
  for (const auto& entry : log) bytes += entry.line.size();
  return bytes;
}

// Issue 9 item 1: the simulator embedded in chstreamd (default options) kept
// every event it generated, ~120 MB an hour at 10 events/s. By default it
// now keeps a bounded window (Options::retention_bytes, all streams
// together); timepoints inside it replay, older ones get 416 as upstream.
TEST(SimulatorTest, DefaultRetentionIsBoundedInBytes) {
  Options options = BaseOptions();
  options.max_events_per_stream = -1;
  options.companies_rate = 0;
  // ~100 KB events: 40 MB takes a few hundred, not 40,000.
  options.generator.large_event_probability = 1;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  constexpr size_t kBound = 32 << 20;
  ASSERT_OK(sim->GenerateEvents("companies", 50).status());
  const int64_t first = sim->Log("companies").front().timepoint;
  size_t generated = LogBytes(sim->Log("companies"));
  while (generated < kBound + (8 << 20)) {
    ASSERT_OK(sim->GenerateEvents("companies", 50).status());
    const auto log = sim->Log("companies");
    generated += LogBytes(std::vector<Simulator::LogEntry>(log.end() - 50,
                                                           log.end()));
  }
  const auto log = sim->Log("companies");
  EXPECT_LE(LogBytes(log), kBound);
  EXPECT_GT(log.front().timepoint, first);
  // Outside the window: 416. Inside: replayed from there.
  EXPECT_EQ(StatusOf(*sim, absl::StrCat("/companies?timepoint=", first)).first,
            416);
  const Simulator::LogEntry& inside = log[log.size() / 2];
  auto client =
      Request(*sim, absl::StrCat("/companies?timepoint=", inside.timepoint));
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(3, kTimeout));
  EXPECT_THAT(events,
              ElementsAreArray(Lines(log, log.size() / 2, log.size() / 2 + 3)));
}

// The byte budget is shared: a stream that starts producing after another
// filled the budget still keeps its own window (the largest stream gives
// way), so replay works on every stream.
TEST(SimulatorTest, RetentionBudgetIsSharedFairlyBetweenStreams) {
  Options options = BaseOptions();
  options.max_events_per_stream = -1;
  options.companies_rate = 0;
  options.retention_bytes = 1 << 20;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  ASSERT_OK(sim->GenerateEvents("companies", 3000).status());
  EXPECT_LE(LogBytes(sim->Log("companies")), size_t{1} << 20);
  ASSERT_OK(sim->GenerateEvents("filings", 300).status());
  EXPECT_EQ(sim->Log("filings").size(), 300u);
  EXPECT_LE(LogBytes(sim->Log("companies")) + LogBytes(sim->Log("filings")),
            size_t{1} << 20);
  options.retention_bytes = 0;
  EXPECT_THAT(Simulator::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("retention_bytes")));
}

TEST(SimulatorTest, InvalidTimepointsCanBe400AndFutureOnesCanTail) {
  Options options = BaseOptions();
  options.invalid_timepoint_status = 400;
  options.future_timepoint_tails = true;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  ASSERT_OK_AND_ASSIGN(int64_t head, sim->GenerateEvents("filings", 3));
  EXPECT_EQ(StatusOf(*sim, "/filings?timepoint=abc").first, 400);
  EXPECT_EQ(StatusOf(*sim, "/filings?timepoint=-1").first, 400);
  EXPECT_EQ(StatusOf(*sim, "/filings?timepoint=1").first, 416);  // too old
  auto client = Request(*sim, absl::StrCat("/filings?timepoint=", head + 1000));
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead ok_head, client->ReadHead(kTimeout));
  ASSERT_EQ(ok_head.status, 200);
  ASSERT_OK(sim->GenerateEvents("filings", 1).status());
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(1, kTimeout));
  EXPECT_EQ(events[0], sim->Log("filings").back().line);
}

// Verifies rate 0 (generate as fast as the client reads) with a cap: the
// client gets exactly the capped set, then heartbeats only.
TEST(SimulatorTest, RateZeroServesExactlyMaxEvents) {
  Options options = BaseOptions();
  options.companies_rate = 0;
  options.max_events_per_stream = 500;
  options.streams = {"companies"};
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  EXPECT_TRUE(sim->Log("companies").empty());
  auto client = Request(*sim, "/companies?timepoint=82000000");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events, client->ReadEvents(500, kTimeout));
  const auto log = sim->Log("companies");
  ASSERT_EQ(log.size(), 500u);
  EXPECT_THAT(events, ElementsAreArray(Lines(log)));
  ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
  EXPECT_EQ(line, "");
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) {
        auto it = s.events_sent.find("companies");
        return it != s.events_sent.end() && it->second == 500;
      },
      kTimeout));
  // Streams not listed produce nothing.
  EXPECT_TRUE(sim->Log("filings").empty());
}

TEST(SimulatorTest, PacedStreamsGenerateOnTheirOwn) {
  Options options = BaseOptions();
  options.companies_rate = 0;
  options.stream_rates = {{"officers", 400}};
  options.streams = {"officers"};
  options.max_events_per_stream = 20;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  ASSERT_TRUE(sim->WaitFor(
      [](const Stats& s) {
        auto it = s.events_generated.find("officers");
        return it != s.events_generated.end() && it->second == 20;
      },
      kTimeout));
  const auto log = sim->Log("officers");
  ASSERT_EQ(log.size(), 20u);
  auto client = Request(
      *sim, absl::StrCat("/officers?timepoint=", log.front().timepoint));
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto events, [&] {
    EXPECT_OK(client->ReadHead(kTimeout).status());
    return client->ReadEvents(20, kTimeout);
  }());
  EXPECT_THAT(events, ElementsAreArray(Lines(log)));
  EXPECT_EQ(sim->Log("officers").size(), 20u);  // capped
}

TEST(SimulatorTest, LiveClientsReceivePacedEventsInOrder) {
  Options options = BaseOptions();
  options.stream_rates = {{"companies", 300}};
  options.streams = {"companies"};
  options.max_events_per_stream = 60;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Request(*sim, "/companies?timepoint=82000000");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  int heartbeats = 0;
  ASSERT_OK_AND_ASSIGN(auto events,
                       client->ReadEvents(60, kTimeout, &heartbeats));
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"))));
}

TEST(SimulatorTest, StatsCountConnectionsAndOpenStreamsPerKey) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  auto a = Request(*sim, "/companies");
  auto b = Request(*sim, "/filings");
  auto c = Request(*sim, "/charges", "second-key");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  for (auto* client : {a.get(), b.get(), c.get()}) {
    ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
    EXPECT_EQ(head.status, 200);
  }
  Stats stats = sim->GetStats();
  EXPECT_EQ(stats.connections_accepted, 3);
  EXPECT_EQ(stats.connections_by_key.at(kKey), 2);
  EXPECT_EQ(stats.connections_by_key.at("second-key"), 1);
  EXPECT_EQ(stats.OpenConnections(), 3);
  EXPECT_EQ(stats.Requests("/companies", 200), 1);
  // A client hanging up frees its slot without waiting for a write.
  a->Close();
  c->Close();
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) {
        return s.OpenConnections() == 1 && s.connections_by_key.count(kKey) &&
               !s.connections_by_key.count("second-key");
      },
      kTimeout));
}

// Verifies that several io_context threads serve many concurrent clients,
// each getting the exact log, while the log is still growing.
TEST(SimulatorTest, ServesManyClientsOnSeveralThreads) {
  Options options = BaseOptions();
  options.threads = 4;
  options.streams = {"companies", "filings"};
  options.stream_rates = {{"companies", 2000}, {"filings", 2000}};
  options.max_events_per_stream = 400;
  options.faults.split_random = 5;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  std::vector<std::unique_ptr<TestHttpClient>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(Request(*sim, i % 2 ? "/filings?timepoint=168500000"
                                          : "/companies?timepoint=82000000"));
    ASSERT_NE(clients.back(), nullptr);
  }
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK_AND_ASSIGN(ResponseHead head, clients[i]->ReadHead(kTimeout));
    ASSERT_EQ(head.status, 200);
    ASSERT_OK_AND_ASSIGN(auto events, clients[i]->ReadEvents(400, kTimeout));
    EXPECT_THAT(events, ElementsAreArray(
                            Lines(sim->Log(i % 2 ? "filings" : "companies"))));
  }
  EXPECT_TRUE(sim->WaitFor(
      [](const Stats& s) {
        return Count(s.events_sent, "companies") == 1600 &&
               Count(s.events_sent, "filings") == 1600;
      },
      kTimeout));
}

TEST(SimulatorTest, UnknownStreamAccessorsAreEmpty) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  EXPECT_TRUE(sim->Log("nope").empty());
  EXPECT_TRUE(sim->Log("/companies").empty());
  EXPECT_EQ(sim->HeadTimepoint("nope"), 0);
  EXPECT_THAT(sim->GenerateEvents("nope", 1),
              StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(sim->SkipTimepoints("nope", 1),
              StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_TRUE(sim->MalformedSent("nope").empty());
}

TEST(SimulatorTest, StopClosesOpenStreamsAndIsIdempotent) {
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(BaseOptions()));
  auto client = Request(*sim, "/companies");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  sim->Stop();
  sim->Stop();
  absl::Status status;
  for (int i = 0; i < 1000 && status.ok(); ++i) {
    status = client->ReadLine(kTimeout).status();
  }
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
}

// Verifies the benchmark mode: realistic ~1.3 KB profiles at rate 0, served
// as fast as one client reads (reported, not asserted: timing is not a test).
TEST(SimulatorTest, ServesProfileEventsAtFullSpeed) {
  Options options = BaseOptions();
  options.heartbeat_interval = absl::Seconds(30);
  options.companies_rate = 0;
  options.streams = {"companies"};
  options.max_events_per_stream = 20'000;
  options.generator.profile_only = true;
  ASSERT_OK_AND_ASSIGN(auto sim, Simulator::Start(options));
  auto client = Request(*sim, "/companies?timepoint=82000000");
  ASSERT_NE(client, nullptr);
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
  ASSERT_EQ(head.status, 200);
  ASSERT_OK_AND_ASSIGN(auto events,
                       client->ReadEvents(20'000, absl::Seconds(60)));
  const absl::Duration elapsed = absl::Now() - start;
  size_t bytes = 0;
  for (const std::string& e : events) bytes += e.size() + 1;
  const double rate = 20'000 / absl::ToDoubleSeconds(elapsed);
  ::testing::Test::RecordProperty("events_per_second", static_cast<int>(rate));
  std::printf("served 20000 events (%zu bytes) in %s: %.0f events/s\n", bytes,
              absl::FormatDuration(elapsed).c_str(), rate);
  EXPECT_THAT(events, ElementsAreArray(Lines(sim->Log("companies"))));
}

}  // namespace
}  // namespace chstream::ingest::sim
