// The status page's handlers (server/status_page.h) on a real HttpListener:
// the HTML, /status.json as GetStatus's proto3 JSON, /history.json with the
// sampled event counts and the newest alerts. The page in a real browser:
// tests/server/status_page_browser_test.cc.
#include "server/status_page.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http_listener.h"
#include "server/metrics.h"
#include "tests/server/metrics_http_client.h"

namespace chstream::server {
namespace {

using ::chstream::server::testing::HttpRequest;
using ::chstream::server::testing::TestResponse;
using ::chstream::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;

v1::GetStatusResponse SampleStatus() {
  v1::GetStatusResponse status;
  v1::StreamStatus* companies = status.add_streams();
  companies->set_stream("companies");
  companies->set_state(v1::STREAM_STATE_STREAMING);
  companies->set_events_total(12345678901234ULL);
  companies->set_last_error("<script>alert(1)</script>");
  companies->mutable_last_event_at()->set_seconds(1700000000);
  v1::StreamStatus* filings = status.add_streams();
  filings->set_stream("filings");
  filings->set_state(v1::STREAM_STATE_BACKING_OFF);
  filings->mutable_next_retry_at()->set_seconds(1700000030);
  status.mutable_store()->set_head_position(99);
  status.mutable_store()->set_companies_stored(7);
  status.add_subscribers()->set_id("3");
  status.mutable_health()->set_overall("degraded");
  v1::HealthIssue* issue = status.mutable_health()->add_issues();
  issue->set_stream("filings");
  issue->set_rule("disconnected");
  issue->set_severity("degraded");
  status.set_version("1.2.3");
  return status;
}

// Verifies /status.json is GetStatus in the proto3 JSON mapping: it parses
// back into an equal message, and zero values are printed.
TEST(StatusToJsonTest, RoundTripsAndPrintsDefaults) {
  const v1::GetStatusResponse status = SampleStatus();
  ASSERT_OK_AND_ASSIGN(std::string json, StatusToJson(status));
  EXPECT_THAT(json, HasSubstr("\"state\":\"STREAM_STATE_STREAMING\""));
  EXPECT_THAT(json, HasSubstr("\"eventsTotal\":\"12345678901234\""));
  EXPECT_THAT(json, HasSubstr("\"lagSeconds\":0"));
  EXPECT_THAT(json, HasSubstr("\"reconnectsTotal\":\"0\""));
  v1::GetStatusResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok());
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(status, parsed))
      << parsed.DebugString();
}

ingest::StreamStatusSnapshot Snapshot(const std::string& stream,
                                      uint64_t events) {
  ingest::StreamStatusSnapshot s;
  s.stream = stream;
  s.events_total = events;
  return s;
}

TEST(IngestHistoryTest, KeepsTheLastSamplesPerStream) {
  FakeClock clock(absl::FromUnixSeconds(1700000000));
  uint64_t companies = 0;
  IngestHistory history(
      {.interval = absl::Seconds(5), .max_samples = 3},
      [&] {
        return std::vector<ingest::StreamStatusSnapshot>{
            Snapshot("filings", 7), Snapshot("companies", companies)};
      },
      &clock);
  EXPECT_EQ(history.JsonMembers(),
            "\"intervalSeconds\":5,\"maxSamples\":3,\"streams\":[]");
  for (int i = 0; i < 4; ++i) {
    companies = 10 * i;
    history.Sample();
    clock.Advance(absl::Seconds(5));
  }
  EXPECT_EQ(history.JsonMembers(),
            "\"intervalSeconds\":5,\"maxSamples\":3,\"streams\":["
            "{\"stream\":\"companies\",\"samples\":[[1700000005000,10],"
            "[1700000010000,20],[1700000015000,30]]},"
            "{\"stream\":\"filings\",\"samples\":[[1700000005000,7],"
            "[1700000010000,7],[1700000015000,7]]}]");
}

// Verifies Start() samples at once and again after the interval (real time,
// a short interval; waits on the condition, no sleep).
TEST(IngestHistoryTest, StartSamplesPeriodicallyUntilStopped) {
  std::atomic<int> calls{0};
  IngestHistory history(
      {.interval = absl::Milliseconds(10), .max_samples = 100},
      [&] {
        ++calls;
        return std::vector<ingest::StreamStatusSnapshot>{Snapshot("c", 1)};
      },
      Clock::Real());
  history.Start();
  EXPECT_GE(calls.load(), 1);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (calls.load() < 3 && absl::Now() < deadline) std::this_thread::yield();
  EXPECT_GE(calls.load(), 3);
  history.Stop();
  const int after_stop = calls.load();
  history.Stop();  // idempotent
  EXPECT_EQ(calls.load(), after_stop);
}

HealthTransition Transition(const std::string& stream, int minute) {
  HealthTransition t;
  t.stream = stream;
  t.from = HealthState::kHealthy;
  t.to = HealthState::kDegraded;
  t.at = absl::FromUnixSeconds(1700000000 + 60 * minute);
  HealthIssue issue;
  issue.stream = stream;
  issue.rule = "stalled";
  issue.message = absl::StrCat("minute ", minute);
  t.issues.push_back(issue);
  return t;
}

class StatusPageTest : public ::testing::Test {
 protected:
  void Start(StatusPageSources sources) {
    HttpListener::Options options{.address = "127.0.0.1:0"};
    options.handlers = StatusPageHandlers(std::move(sources));
    ASSERT_OK_AND_ASSIGN(listener_,
                         HttpListener::Start(options, &registry_, nullptr));
  }
  TestResponse Get(const std::string& path) {
    absl::StatusOr<TestResponse> r =
        HttpRequest(listener_->port(), "GET", path);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : TestResponse{};
  }

  MetricsRegistry registry_;
  std::unique_ptr<HttpListener> listener_;
};

// Verifies the page is HTML, never cached, and self-contained: nothing it
// contains loads from elsewhere.
TEST_F(StatusPageTest, ServesASelfContainedPage) {
  Start({.status = [](v1::GetStatusResponse*) { return absl::OkStatus(); }});
  const TestResponse r = Get("/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(r.Header("cache-control"), "no-store");
  EXPECT_EQ(r.body, StatusPageHtml());
  EXPECT_TRUE(absl::StartsWith(r.body, "<!DOCTYPE html>"))
      << r.body.substr(0, 20);
  EXPECT_THAT(r.body, HasSubstr("status.json"));
  EXPECT_THAT(r.body, HasSubstr("history.json"));
  // No external resources: scripts, styles, fonts, images, frames.
  for (const char* banned : {"<script src", "<link", "@import", "url(", "<img",
                             "<iframe", "https://", "//cdn"}) {
    EXPECT_THAT(r.body, Not(HasSubstr(banned))) << banned;
  }
  // Data is written as text only.
  EXPECT_THAT(r.body, Not(HasSubstr("innerHTML")));
  EXPECT_THAT(r.body, Not(HasSubstr("insertAdjacentHTML")));
  EXPECT_THAT(r.body, Not(HasSubstr("document.write")));
}

TEST_F(StatusPageTest, StatusJsonIsTheGetStatusResponse) {
  Start({.status = [](v1::GetStatusResponse* out) {
    *out = SampleStatus();
    return absl::OkStatus();
  }});
  const TestResponse r = Get("/status.json");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("cache-control"), "no-store");
  ASSERT_OK_AND_ASSIGN(std::string expected, StatusToJson(SampleStatus()));
  EXPECT_EQ(r.body, expected);
}

TEST_F(StatusPageTest, StatusErrorsAre503) {
  Start({.status = [](v1::GetStatusResponse*) {
    return absl::UnavailableError("database is locked");
  }});
  const TestResponse r = Get("/status.json");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("database is locked"));
  EXPECT_EQ(Get("/").status, 200);  // the page itself still loads
}

// Verifies /history.json carries the samples and the newest alerts first,
// at most max_alerts of them.
TEST_F(StatusPageTest, HistoryJsonHasSamplesAndNewestAlertsFirst) {
  FakeClock clock(absl::FromUnixSeconds(1700000000));
  IngestHistory history(
      {},
      [] {
        return std::vector<ingest::StreamStatusSnapshot>{
            Snapshot("companies", 5)};
      },
      &clock);
  history.Sample();
  Start({.status = [](v1::GetStatusResponse*) { return absl::OkStatus(); },
         .alerts =
             [] {
               return std::vector<HealthTransition>{
                   Transition("a", 1), Transition("b", 2), Transition("c", 3)};
             },
         .history = &history,
         .max_alerts = 2});
  const TestResponse r = Get("/history.json");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.body, absl::StrCat("{", history.JsonMembers(), ",\"alerts\":[",
                                 AlertJson(Transition("c", 3)), ",",
                                 AlertJson(Transition("b", 2)), "]}"));
  EXPECT_THAT(r.body, HasSubstr("[1700000000000,5]"));
}

TEST_F(StatusPageTest, HistoryJsonWithoutSources) {
  Start({.status = [](v1::GetStatusResponse*) { return absl::OkStatus(); }});
  EXPECT_EQ(Get("/history.json").body,
            "{\"intervalSeconds\":0,\"maxSamples\":0,\"streams\":[],"
            "\"alerts\":[]}");
}

}  // namespace
}  // namespace chstream::server
