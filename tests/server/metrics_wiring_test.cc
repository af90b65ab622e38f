// Wires the metrics registry, the ops HTTP listener and the gRPC metrics
// interceptor to the real store, event writer, subscription hub and
// CompanyStream service, the way server/main.cc is meant to, and checks
// that /metrics follows what happens (commits, a subscriber, RPCs) and
// passes promtool.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/company_stream_service.h"
#include "server/executor.h"
#include "server/grpc_metrics_interceptor.h"
#include "server/http_listener.h"
#include "server/metrics.h"
#include "server/metrics_sources.h"
#include "server/subscription_hub.h"
#include "storage/event_writer.h"
#include "storage/store.h"
#include "tests/server/metrics_http_client.h"

namespace chstream::server {
namespace {

using ::chstream::server::testing::HttpRequest;
using ::chstream::server::testing::TestResponse;
using ::chstream::testing::IsOk;
using ::testing::HasSubstr;

storage::Event Filing(int64_t timepoint) {
  storage::Event e;
  e.stream = "filings";
  e.timepoint = timepoint;
  e.resource_kind = "filing-history";
  e.resource_id = absl::StrCat("T", timepoint);
  e.resource_uri =
      absl::StrCat("/company/01234567/filing-history/T", timepoint);
  e.company_number = "01234567";
  e.published_at = absl::FromUnixSeconds(1'700'000'000 + timepoint);
  e.received_at = e.published_at + absl::Milliseconds(250);
  return e;
}

// Waits, with a deadline, for a log line containing `part`.
class LogWaiter {
 public:
  LogWaiter() {
    log::SetSinkForTest([this](std::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
    });
  }
  ~LogWaiter() { log::SetSinkForTest(nullptr); }
  bool WaitFor(const std::string& part) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() {
      for (const std::string& l : lines_) {
        if (absl::StrContains(l, part)) return true;
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(10));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

TEST(MetricsWiringTest, MetricsFollowTheRealComponents) {
  ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0)
      << "/usr/bin/promtool is missing (Debian package prometheus)";
  LogWaiter logs;
  Clock* clock = Clock::Real();

  // As in main.cc.
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<storage::Store> store,
      storage::Store::Open(absl::StrCat(std::getenv("TEST_TMPDIR"), "/w.db")));
  SubscriptionHub hub;
  Executor executor(2);
  ServiceOptions service_options;
  service_options.version = "wiring-test";
  service_options.started_at = clock->Now();
  CompanyStreamService service(
      store.get(), &hub, &executor,
      [] { return std::vector<ingest::StreamStatusSnapshot>{}; }, clock,
      service_options);
  storage::EventWriter writer(
      store.get(), {},
      [&hub](const storage::CommitResult& r) { hub.Publish(r.events); }, clock);
  writer.Start();

  // The metrics wiring the lead adds to main.cc.
  MetricsRegistry registry;
  RegisterProcessMetrics(registry);
  MetricsSources sources;
  sources.version = service_options.version;
  sources.streams = [] { return std::vector<ingest::StreamStatusSnapshot>{}; };
  sources.writer = [&writer] { return writer.GetStats(); };
  sources.store = [&store] { return store->Stats(); };
  sources.subscribers = [&service] { return service.subscribers().Snapshot(); };
  RegisterChstreamMetrics(registry, sources);

  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &grpc_port);
  builder.RegisterService(&service);
  GrpcMetricsInterceptorFactory::Options interceptor_options;
  interceptor_options.known_methods =
      MethodNames(v1::CompanyStream::service_full_name());
  ASSERT_EQ(interceptor_options.known_methods.size(), 6u);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      creators;
  creators.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(
      &registry, clock, interceptor_options));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  ASSERT_NE(grpc_server, nullptr);

  std::atomic<bool> serving{true};
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<HttpListener> http,
      HttpListener::Start({.address = "127.0.0.1:0"}, &registry,
                          [&serving]() -> absl::Status {
                            if (serving.load()) return absl::OkStatus();
                            return absl::UnavailableError("shutting down");
                          }));

  // Activity: 5 commits, one live subscriber, one GetStatus.
  for (int64_t tp = 1; tp <= 5; ++tp) ASSERT_TRUE(writer.Push(Filing(tp)));
  writer.Flush();

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_port),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::CompanyStream::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::GetStatusRequest request;
    v1::GetStatusResponse response;
    ASSERT_TRUE(stub->GetStatus(&ctx, request, &response).ok());
  }
  ASSERT_TRUE(logs.WaitFor("/chstream.v1.CompanyStream/GetStatus"));

  grpc::ClientContext sub_ctx;
  v1::SubscribeRequest sub_request;
  sub_request.mutable_start()->set_beginning(true);
  auto reader = stub->Subscribe(&sub_ctx, sub_request);
  v1::SubscribeResponse message;
  int events = 0;
  while (reader->Read(&message) && !message.has_caught_up()) {
    if (message.has_event()) ++events;
  }
  ASSERT_TRUE(message.has_caught_up());
  EXPECT_EQ(events, 5);

  ASSERT_OK_AND_ASSIGN(TestResponse r,
                       HttpRequest(http->port(), "GET", "/metrics"));
  ASSERT_EQ(r.status, 200);
  for (const char* line : {
           "chstream_writer_events_total 5\n",
           "chstream_writer_batches_total ",
           "chstream_writer_commit_duration_seconds_count ",
           "chstream_store_events 5\n",
           "chstream_store_head_position 5\n",
           "chstream_subscribers{mode=\"live\"} 1\n",
           "chstream_build_info{version=\"wiring-test\"} 1\n",
           "chstream_grpc_requests_total{method=\"/chstream.v1.CompanyStream/"
           "GetStatus\",code=\"OK\"} 1\n",
           "chstream_grpc_request_duration_seconds_count{method=\"/"
           "chstream.v1.CompanyStream/Subscribe\"} 0\n",
           "chstream_process_open_fds ",
       }) {
    EXPECT_THAT(r.body, HasSubstr(line));
  }
  EXPECT_THAT(r.body, ::testing::ContainsRegex(
                          "chstream_subscriber_events_sent_total [1-9]"));

  // promtool accepts the real output.
  const std::string path =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/wiring_metrics.txt");
  std::ofstream(path, std::ios::binary) << r.body;
  const int status = std::system(
      absl::StrCat("/usr/bin/promtool check metrics < '", path, "'").c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << r.body;

  // Shutdown in main.cc's order: not ready first, then stop serving.
  serving = false;
  ASSERT_OK_AND_ASSIGN(r, HttpRequest(http->port(), "GET", "/readyz"));
  EXPECT_EQ(r.status, 503);
  sub_ctx.TryCancel();
  reader->Finish();
  service.subscribers().Shutdown();
  grpc_server->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(3));
  writer.Stop();
  ASSERT_TRUE(logs.WaitFor("/chstream.v1.CompanyStream/Subscribe"));
  ASSERT_OK_AND_ASSIGN(r, HttpRequest(http->port(), "GET", "/metrics"));
  EXPECT_THAT(r.body, HasSubstr("chstream_grpc_request_duration_seconds_count{"
                                "method=\"/chstream.v1.CompanyStream/"
                                "Subscribe\"} 1\n"));
  http->Stop();
}

}  // namespace
}  // namespace chstream::server
