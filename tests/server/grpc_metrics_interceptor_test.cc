#include "server/grpc_metrics_interceptor.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/clock.h"
#include "base/log.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/metrics.h"

namespace chstream::server {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kTimeout = absl::Seconds(10);
constexpr char kCheck[] = "/grpc.health.v1.Health/Check";
constexpr char kWatch[] = "/grpc.health.v1.Health/Watch";

// Collects log lines and waits (with a deadline) for one to appear.
class LogCapture {
 public:
  LogCapture() {
    log::SetSinkForTest([this](std::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
    });
  }
  ~LogCapture() { log::SetSinkForTest(nullptr); }

  // The first line containing every one of `parts`, or "" on timeout.
  std::string WaitFor(const std::vector<std::string>& parts) {
    absl::MutexLock lock(&mu_);
    std::string found;
    auto has_line = [&]() {
      for (const std::string& line : lines_) {
        bool all = true;
        for (const std::string& p : parts)
          all = all && absl::StrContains(line, p);
        if (all) {
          found = line;
          return true;
        }
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&has_line), kTimeout);
    return found;
  }

  size_t size() {
    absl::MutexLock lock(&mu_);
    return lines_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

// Stays open, after one message, until the client cancels.
class HangingWatch final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  HangingWatch() {
    response_.set_status(HealthCheckResponse::SERVING);
    StartWrite(&response_);
  }
  void OnWriteDone(bool /*ok*/) override {}
  void OnCancel() override { Finish(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }

 private:
  HealthCheckResponse response_;
};

// Sends one message and finishes OK.
class OneShotWatch final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  OneShotWatch() {
    response_.set_status(HealthCheckResponse::SERVING);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }
  void OnDone() override { delete this; }

 private:
  HealthCheckResponse response_;
};

// Check: "slow" takes 250 ms of fake time; "missing" is NOT_FOUND.
// Watch: "hang" streams until cancelled; anything else sends one message.
class TestHealthService final : public Health::CallbackService {
 public:
  explicit TestHealthService(FakeClock* clock) : clock_(clock) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const HealthCheckRequest* request,
                                  HealthCheckResponse* response) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    if (request->service() == "missing") {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND, "no such service"));
      return reactor;
    }
    if (request->service() == "slow") clock_->Advance(absl::Milliseconds(250));
    response->set_status(HealthCheckResponse::SERVING);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* /*ctx*/,
      const HealthCheckRequest* request) override {
    if (request->service() == "hang") return new HangingWatch();
    return new OneShotWatch();
  }

 private:
  FakeClock* const clock_;
};

class GrpcMetricsInterceptorTest : public ::testing::Test {
 protected:
  void StartServer(GrpcMetricsInterceptorFactory::Options options) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        creators;
    creators.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(
        &registry_, &clock_, std::move(options)));
    builder.experimental().SetInterceptorCreators(std::move(creators));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
    stub_ = Health::NewStub(channel_);
  }
  void StartServer() {
    GrpcMetricsInterceptorFactory::Options options;
    options.quiet_methods.clear();
    StartServer(std::move(options));
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(5));
    }
  }

  grpc::Status Check(const std::string& service) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    return stub_->Check(&ctx, request, &response);
  }

  LogCapture logs_;
  FakeClock clock_;
  MetricsRegistry registry_;
  TestHealthService service_{&clock_};
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(GrpcMetricsInterceptorTest, RecordsUnaryCallCodeDurationAndLogLine) {
  StartServer();
  ASSERT_TRUE(Check("slow").ok());
  const std::string line = logs_.WaitFor({"\"grpc call\"", kCheck});
  ASSERT_FALSE(line.empty());
  EXPECT_THAT(line, HasSubstr("\"level\":\"info\""));
  EXPECT_THAT(line, HasSubstr("\"code\":\"OK\""));
  EXPECT_THAT(line, HasSubstr("\"duration_seconds\":0.25"));
  EXPECT_THAT(line, HasSubstr("\"peer\":\"ipv4:127.0.0.1:"));
  EXPECT_THAT(line, Not(HasSubstr("\"error\"")));

  const std::string text = registry_.Render();
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("chstream_grpc_requests_total{method=\"",
                                     kCheck, "\",code=\"OK\"} 1\n")));
  const std::string hist = absl::StrCat(
      "chstream_grpc_request_duration_seconds_bucket{method=\"", kCheck, "\",");
  EXPECT_THAT(text, HasSubstr(absl::StrCat(hist, "le=\"0.1\"} 0\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(hist, "le=\"0.25\"} 1\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(hist, "le=\"+Inf\"} 1\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "chstream_grpc_request_duration_seconds_sum{method=\"",
                        kCheck, "\"} 0.25\n")));
}

TEST_F(GrpcMetricsInterceptorTest, RecordsErrorCodeAndMessage) {
  StartServer();
  ASSERT_EQ(Check("missing").error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Check("x").ok());
  const std::string line = logs_.WaitFor({"\"code\":\"NOT_FOUND\""});
  ASSERT_FALSE(line.empty());
  EXPECT_THAT(line, HasSubstr("\"level\":\"warning\""));
  EXPECT_THAT(line, HasSubstr("\"error\":\"no such service\""));
  ASSERT_FALSE(logs_.WaitFor({"\"code\":\"OK\""}).empty());

  const std::string text = registry_.Render();
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("chstream_grpc_requests_total{method=\"",
                                     kCheck, "\",code=\"NOT_FOUND\"} 1\n")));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("chstream_grpc_requests_total{method=\"",
                                     kCheck, "\",code=\"OK\"} 1\n")));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat(
                  "chstream_grpc_request_duration_seconds_count{method=\"",
                  kCheck, "\"} 2\n")));
}

TEST_F(GrpcMetricsInterceptorTest, RecordsServerStreamingCall) {
  StartServer();
  grpc::ClientContext ctx;
  HealthCheckRequest request;
  request.set_service("once");
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader =
      stub_->Watch(&ctx, request);
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_FALSE(reader->Read(&response));
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_FALSE(logs_.WaitFor({kWatch, "\"code\":\"OK\""}).empty());
  EXPECT_THAT(registry_.Render(),
              HasSubstr(absl::StrCat("chstream_grpc_requests_total{method=\"",
                                     kWatch, "\",code=\"OK\"} 1\n")));
}

// Verifies that a stream the client abandons is still counted, as
// CANCELLED, and logged at info level (cancelling is routine).
TEST_F(GrpcMetricsInterceptorTest, RecordsStreamCancelledByClient) {
  StartServer();
  grpc::ClientContext ctx;
  HealthCheckRequest request;
  request.set_service("hang");
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader =
      stub_->Watch(&ctx, request);
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  clock_.Advance(absl::Seconds(42));
  ctx.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const std::string line = logs_.WaitFor({kWatch});
  ASSERT_FALSE(line.empty());
  EXPECT_THAT(line, HasSubstr("\"code\":\"CANCELLED\""));
  EXPECT_THAT(line, HasSubstr("\"level\":\"info\""));
  EXPECT_THAT(line, HasSubstr("\"duration_seconds\":42"));
  EXPECT_THAT(registry_.Render(),
              HasSubstr(absl::StrCat("chstream_grpc_requests_total{method=\"",
                                     kWatch, "\",code=\"CANCELLED\"} 1\n")));
}

TEST_F(GrpcMetricsInterceptorTest, QuietMethodsLogAtDebugLevel) {
  log::SetMinLevel(log::Level::kDebug);
  StartServer(GrpcMetricsInterceptorFactory::Options());  // Check is quiet
  ASSERT_TRUE(Check("x").ok());
  ASSERT_EQ(Check("missing").error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string ok = logs_.WaitFor({kCheck, "\"code\":\"OK\""});
  const std::string bad = logs_.WaitFor({kCheck, "\"code\":\"NOT_FOUND\""});
  log::SetMinLevel(log::Level::kInfo);
  EXPECT_THAT(ok, HasSubstr("\"level\":\"debug\""));
  // Failures of quiet methods are still warnings.
  EXPECT_THAT(bad, HasSubstr("\"level\":\"warning\""));
}

// Calls "/no.Such/Method<i>" for i in [0, n): gRPC intercepts these too and
// answers UNIMPLEMENTED. Waits until the last one is recorded.
void CallUnknownMethods(grpc::GenericStub& generic, LogCapture& logs, int n) {
  for (int i = 0; i < n; ++i) {
    const std::string method = absl::StrCat("/no.Such/Method", i);
    grpc::ClientContext ctx;
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                      [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(kTimeout));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    ASSERT_FALSE(logs.WaitFor({method, "UNIMPLEMENTED"}).empty());
  }
}

// Verifies that clients cannot mint method label values: past max_methods
// distinct names, calls are labelled "other".
TEST_F(GrpcMetricsInterceptorTest, UnknownMethodsBeyondLimitAreOther) {
  GrpcMetricsInterceptorFactory::Options options;
  options.max_methods = 2;
  options.quiet_methods.clear();
  StartServer(std::move(options));
  ASSERT_TRUE(Check("x").ok());
  ASSERT_FALSE(logs_.WaitFor({kCheck}).empty());
  grpc::GenericStub generic(channel_);
  CallUnknownMethods(generic, logs_, 5);
  const std::string text = registry_.Render();
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("chstream_grpc_requests_total{method=\"",
                                     kCheck, "\",code=\"OK\"} 1\n")));
  EXPECT_THAT(text, HasSubstr("chstream_grpc_requests_total{method=\"/no.Such/"
                              "Method0\",code=\"UNIMPLEMENTED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("chstream_grpc_requests_total{method=\"other\","
                              "code=\"UNIMPLEMENTED\"} 4\n"));
  EXPECT_THAT(text, Not(HasSubstr("Method1")));
}

// With known_methods, only those get labels (and zero series up front).
TEST_F(GrpcMetricsInterceptorTest, KnownMethodsOnlyGetTheirOwnLabels) {
  GrpcMetricsInterceptorFactory::Options options;
  options.known_methods = MethodNames(
      *HealthCheckRequest::descriptor()->file()->FindServiceByName("Health"));
  options.quiet_methods.clear();
  StartServer(std::move(options));
  const std::string before = registry_.Render();
  EXPECT_THAT(before,
              HasSubstr(absl::StrCat(
                  "chstream_grpc_request_duration_seconds_count{method=\"",
                  kWatch, "\"} 0\n")));
  grpc::GenericStub generic(channel_);
  CallUnknownMethods(generic, logs_, 2);
  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("chstream_grpc_requests_total{method=\"other\","
                              "code=\"UNIMPLEMENTED\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("/no.Such/")));
}

TEST(GrpcMethodNamesTest, ListsFullMethodNames) {
  EXPECT_THAT(
      MethodNames(*HealthCheckRequest::descriptor()->file()->FindServiceByName(
          "Health")),
      ::testing::ElementsAre(kCheck, kWatch));
  EXPECT_THAT(MethodNames(Health::service_full_name()),
              ::testing::ElementsAre(kCheck, kWatch));
  EXPECT_THAT(MethodNames("no.such.Service"), ::testing::IsEmpty());
}

TEST(GrpcMetricsInterceptorFactoryTest, RecordLabelsMethodsBeyondLimitOther) {
  LogCapture logs;
  FakeClock clock;
  MetricsRegistry registry;
  GrpcMetricsInterceptorFactory::Options options;
  options.max_methods = 1;
  options.duration_buckets = {1};
  GrpcMetricsInterceptorFactory factory(&registry, &clock, options);
  factory.Record("/a.A/One", "peer", grpc::StatusCode::OK, "",
                 absl::Seconds(2));
  factory.Record("/a.A/Two", "peer", grpc::StatusCode::INTERNAL, "boom",
                 absl::Milliseconds(500));
  factory.Record("/a.A/Three", "peer", grpc::StatusCode::INTERNAL, "boom",
                 absl::Milliseconds(500));
  factory.Record("/a.A/One", "peer", grpc::StatusCode::OK, "",
                 absl::Seconds(2));
  EXPECT_EQ(
      registry.Render(),
      "# HELP chstream_grpc_request_duration_seconds Duration of gRPC "
      "calls by method, from start to close, in seconds.\n"
      "# TYPE chstream_grpc_request_duration_seconds histogram\n"
      "chstream_grpc_request_duration_seconds_bucket{method=\"/a.A/One\","
      "le=\"1\"} 0\n"
      "chstream_grpc_request_duration_seconds_bucket{method=\"/a.A/One\","
      "le=\"+Inf\"} 2\n"
      "chstream_grpc_request_duration_seconds_sum{method=\"/a.A/One\"} 4\n"
      "chstream_grpc_request_duration_seconds_count{method=\"/a.A/One\"} "
      "2\n"
      "chstream_grpc_request_duration_seconds_bucket{method=\"other\","
      "le=\"1\"} 2\n"
      "chstream_grpc_request_duration_seconds_bucket{method=\"other\","
      "le=\"+Inf\"} 2\n"
      "chstream_grpc_request_duration_seconds_sum{method=\"other\"} 1\n"
      "chstream_grpc_request_duration_seconds_count{method=\"other\"} 2\n"
      "# HELP chstream_grpc_requests_total Finished gRPC calls by method "
      "and status code.\n"
      "# TYPE chstream_grpc_requests_total counter\n"
      "chstream_grpc_requests_total{method=\"/a.A/One\",code=\"OK\"} 2\n"
      "chstream_grpc_requests_total{method=\"other\",code=\"INTERNAL\"} "
      "2\n");
  // The log keeps the real method name.
  EXPECT_THAT(logs.WaitFor({"/a.A/Three", "\"error\":\"boom\""}),
              HasSubstr("\"level\":\"warning\""));
}

TEST(GrpcCodeNameTest, NamesEveryCode) {
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::DEADLINE_EXCEEDED),
            "DEADLINE_EXCEEDED");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(GrpcCodeName(static_cast<grpc::StatusCode>(99)), "UNKNOWN");
}

}  // namespace
}  // namespace chstream::server
