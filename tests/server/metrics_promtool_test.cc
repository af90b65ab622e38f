// Checks chstream's whole /metrics output with Prometheus' own linter,
// `promtool check metrics` (Debian package "prometheus", installed by
// tools/setup). The test fails, rather than skips, when promtool is missing.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"
#include "server/grpc_metrics_interceptor.h"
#include "server/http_listener.h"
#include "server/metrics.h"
#include "server/metrics_sources.h"
#include "tests/server/metrics_http_client.h"

namespace chstream::server {
namespace {

using ::chstream::server::testing::HttpRequest;
using ::chstream::server::testing::TestResponse;
using ::chstream::testing::IsOk;
using ::testing::HasSubstr;

constexpr char kPromtool[] = "/usr/bin/promtool";

struct PromtoolResult {
  int exit_code = -1;
  std::string output;
};

// Runs `promtool check metrics` on `text`.
PromtoolResult CheckMetrics(const std::string& text, const std::string& name) {
  const std::string path =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name, ".txt");
  std::ofstream(path, std::ios::binary) << text;
  PromtoolResult result;
  FILE* pipe = popen(
      absl::StrCat(kPromtool, " check metrics < '", path, "' 2>&1").c_str(),
      "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0)
    result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class PromtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kPromtool, X_OK), 0)
        << kPromtool << " is missing: install Debian's \"prometheus\" package "
        << "(tools/setup does)";
  }
};

// Verifies the harness: promtool really rejects bad exposition text.
TEST_F(PromtoolTest, RejectsBadText) {
  PromtoolResult r = CheckMetrics(
      "# TYPE chstream_events counter\nchstream_events 1\n", "bad");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("_total"));
}

std::vector<ingest::StreamStatusSnapshot> Streams() {
  ingest::StreamStatusSnapshot companies;
  companies.stream = "companies";
  companies.state = ingest::StreamState::kStreaming;
  companies.last_timepoint = 82000123;
  companies.last_event_at = absl::FromUnixSeconds(1700000100);
  companies.last_heartbeat_at = absl::FromUnixSeconds(1700000090);
  companies.events_total = 1500;
  companies.bytes_total = 4096000;
  companies.last_http_status = 200;
  companies.lag_seconds = 0.75;
  companies.reader_wait = absl::Milliseconds(12);
  ingest::StreamStatusSnapshot officers;
  officers.stream = "officers \"quoted\"\\ \n";  // escaping stress
  officers.state = ingest::StreamState::kAuthFailed;
  officers.last_http_status = 401;
  return {companies, officers};
}

storage::EventWriter::Stats Writer() {
  storage::EventWriter::Stats w;
  w.batches = 10;
  w.events = 900;
  w.queue_capacity = 16384;
  w.latency_bucket_bounds_seconds = {0.0005, 0.001, 0.005, 0.05, 0.5};
  w.latency_bucket_counts = {1, 2, 3, 4, 0, 0};
  w.latency_sum_seconds = 0.08;
  w.latency_count = 10;
  w.batch_size_bucket_bounds = {1, 16, 256, 4096};
  w.batch_size_bucket_counts = {1, 3, 6, 0, 0};
  w.batch_size_sum = 900;
  w.batch_size_count = 10;
  return w;
}

// Verifies the complete output of a listener wired like chstreamd: every
// family chstream exports, as served on /metrics.
TEST_F(PromtoolTest, AcceptsTheFullMetricsEndpoint) {
  MetricsRegistry registry;
  RegisterProcessMetrics(registry);
  MetricsSources sources;
  sources.version = "0.1.0";
  sources.streams = Streams;
  sources.writer = Writer;
  sources.store = []() -> absl::StatusOr<storage::StoreStats> {
    storage::StoreStats s;
    s.head_position = 1000;
    s.oldest_position = 1;
    s.events_stored = 1000;
    s.companies_stored = 250;
    s.db_size_bytes = 1 << 20;
    return s;
  };
  sources.subscribers = [] {
    v1::SubscriberStatus live;
    live.set_id("1");
    live.set_live(true);
    live.set_events_sent(40);
    v1::SubscriberStatus catching_up;
    catching_up.set_id("2");
    catching_up.set_events_sent(2);
    catching_up.set_fell_behind_total(1);
    return std::vector<v1::SubscriberStatus>{live, catching_up};
  };
  RegisterChstreamMetrics(registry, sources);
  GrpcMetricsInterceptorFactory grpc_metrics(&registry, Clock::Real());
  grpc_metrics.Record("/chstream.v1.CompanyStream/GetStatus", "ipv4:x",
                      grpc::StatusCode::OK, "", absl::Milliseconds(3));
  grpc_metrics.Record("/chstream.v1.CompanyStream/Subscribe", "ipv4:x",
                      grpc::StatusCode::CANCELLED, "", absl::Seconds(90));

  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<HttpListener> listener,
      HttpListener::Start({.address = "127.0.0.1:0"}, &registry, nullptr));
  ASSERT_THAT(HttpRequest(listener->port(), "GET", "/healthz"), IsOk());
  ASSERT_THAT(HttpRequest(listener->port(), "GET", "/nope"), IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r,
                       HttpRequest(listener->port(), "GET", "/metrics"));
  ASSERT_EQ(r.status, 200);
  for (const char* family :
       {"chstream_process_open_fds", "chstream_ingest_events_total",
        "chstream_ingest_stream_state",
        "chstream_writer_commit_duration_seconds", "chstream_store_events",
        "chstream_subscribers", "chstream_grpc_requests_total",
        "chstream_grpc_request_duration_seconds",
        "chstream_http_requests_total", "chstream_build_info"}) {
    EXPECT_THAT(r.body, HasSubstr(absl::StrCat("# TYPE ", family, " ")));
  }

  PromtoolResult result = CheckMetrics(r.body, "full");
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n--- input:\n" << r.body;
  EXPECT_EQ(result.output, "") << r.body;
}

}  // namespace
}  // namespace chstream::server
