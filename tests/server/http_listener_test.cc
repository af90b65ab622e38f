#include "server/http_listener.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics.h"
#include "tests/server/metrics_http_client.h"

namespace chstream::server {
namespace {

using ::chstream::server::testing::HttpRequest;
using ::chstream::server::testing::TestConnection;
using ::chstream::server::testing::TestResponse;
using ::chstream::testing::IsOk;
using ::chstream::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kGetHealthz[] =
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

class HttpListenerTest : public ::testing::Test {
 protected:
  void Start(HttpListener::Options options = {}) {
    options.address = "127.0.0.1:0";
    registry_.AddCounter("chstream_test_total", "A test counter.", {{"k", "v"}})
        .Increment(3);
    absl::StatusOr<std::unique_ptr<HttpListener>> started =
        HttpListener::Start(options, &registry_, [this]() -> absl::Status {
          absl::MutexLock lock(&mu_);
          return ready_;
        });
    ASSERT_THAT(started, IsOk());
    listener_ = *std::move(started);
    ASSERT_GT(listener_->port(), 0);
  }
  void SetReady(absl::Status status) {
    absl::MutexLock lock(&mu_);
    ready_ = std::move(status);
  }
  std::unique_ptr<TestConnection> Connect() {
    absl::StatusOr<std::unique_ptr<TestConnection>> c =
        TestConnection::Connect(listener_->port());
    EXPECT_THAT(c, IsOk());
    return c.ok() ? *std::move(c) : nullptr;
  }

  MetricsRegistry registry_;
  absl::Mutex mu_;
  absl::Status ready_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HttpListener> listener_;
};

TEST_F(HttpListenerTest, ServesMetricsInTextFormat) {
  Start();
  ASSERT_OK_AND_ASSIGN(TestResponse r,
                       HttpRequest(listener_->port(), "GET", "/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"),
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(r.body, HasSubstr("# TYPE chstream_test_total counter\n"
                                "chstream_test_total{k=\"v\"} 3\n"));
  // Query strings do not change the route.
  ASSERT_OK_AND_ASSIGN(
      r, HttpRequest(listener_->port(), "GET", "/metrics?name[]=x"));
  EXPECT_EQ(r.status, 200);
}

TEST_F(HttpListenerTest, HealthzIsOk) {
  Start();
  ASSERT_OK_AND_ASSIGN(TestResponse r,
                       HttpRequest(listener_->port(), "GET", "/healthz"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
  EXPECT_THAT(r.Header("content-type"), StartsWith("text/plain"));
}

TEST_F(HttpListenerTest, ReadyzFollowsTheReadinessCallback) {
  Start();
  SetReady(absl::UnavailableError("stream companies: AUTH_FAILED"));
  ASSERT_OK_AND_ASSIGN(TestResponse r,
                       HttpRequest(listener_->port(), "GET", "/readyz"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not ready: stream companies: AUTH_FAILED\n");

  SetReady(absl::OkStatus());
  ASSERT_OK_AND_ASSIGN(r, HttpRequest(listener_->port(), "GET", "/readyz"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\n");
}

TEST_F(HttpListenerTest, NoReadinessCallbackMeansReady) {
  MetricsRegistry registry;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<HttpListener> listener,
      HttpListener::Start({.address = "127.0.0.1:0"}, &registry, nullptr));
  ASSERT_OK_AND_ASSIGN(TestResponse r,
                       HttpRequest(listener->port(), "GET", "/readyz"));
  EXPECT_EQ(r.status, 200);
}

TEST_F(HttpListenerTest, UnknownPathIs404) {
  Start();
  for (const char* target : {"/", "/metricsx", "/healthz/extra", "*"}) {
    ASSERT_OK_AND_ASSIGN(TestResponse r,
                         HttpRequest(listener_->port(), "GET", target));
    EXPECT_EQ(r.status, 404) << target;
  }
}

TEST_F(HttpListenerTest, MethodsOtherThanGetAndHeadAre405) {
  Start();
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    ASSERT_OK_AND_ASSIGN(TestResponse r,
                         HttpRequest(listener_->port(), method, "/metrics"));
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.Header("allow"), "GET, HEAD");
  }
}

TEST_F(HttpListenerTest, HeadSendsHeadersOnlyAndKeepsTheConnection) {
  Start();
  std::unique_ptr<TestConnection> c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_THAT(c->Send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, c->ReadResponse(/*head_request=*/true));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-length"), "3");
  // No body bytes follow: the next response starts right away.
  ASSERT_THAT(c->Send(kGetHealthz), IsOk());
  ASSERT_OK_AND_ASSIGN(r, c->ReadResponse());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
}

TEST_F(HttpListenerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Start();
  std::unique_ptr<TestConnection> c = Connect();
  ASSERT_NE(c, nullptr);
  // Two pipelined requests, then a third after the answers.
  ASSERT_THAT(c->Send(absl::StrCat(kGetHealthz,
                                   "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")),
              IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r1, c->ReadResponse());
  ASSERT_OK_AND_ASSIGN(TestResponse r2, c->ReadResponse());
  EXPECT_EQ(r1.body, "ok\n");
  EXPECT_THAT(r2.body, HasSubstr("chstream_test_total"));
  ASSERT_THAT(c->Send(kGetHealthz), IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r3, c->ReadResponse());
  EXPECT_EQ(r3.status, 200);
}

TEST_F(HttpListenerTest, OversizedHeaderIsRejectedWith431) {
  Start({.max_header_bytes = 8 * 1024});
  std::unique_ptr<TestConnection> c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_THAT(
      c->Send(absl::StrCat("GET /metrics HTTP/1.1\r\nHost: x\r\n",
                           "X-Big: ", std::string(9 * 1024, 'a'), "\r\n\r\n")),
      IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, c->ReadResponse());
  EXPECT_EQ(r.status, 431);
  EXPECT_THAT(c->WaitForClose(), IsOk());
}

// Verifies the limit applies to the header block as it arrives, before its
// end is seen: a client cannot make the listener buffer without bound.
TEST_F(HttpListenerTest, EndlessHeaderIsCutOff) {
  Start({.max_header_bytes = 1024});
  std::unique_ptr<TestConnection> c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_THAT(c->Send(absl::StrCat("GET /metrics HTTP/1.1\r\nX-Big: ",
                                   std::string(64 * 1024, 'a'))),
              IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, c->ReadResponse());
  EXPECT_EQ(r.status, 431);
  EXPECT_THAT(c->WaitForClose(), IsOk());
}

TEST_F(HttpListenerTest, RequestBodyIsRejectedWith413) {
  Start();
  std::unique_ptr<TestConnection> c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_THAT(c->Send("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: "
                      "5\r\n\r\nhello"),
              IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, c->ReadResponse());
  EXPECT_EQ(r.status, 413);
  EXPECT_THAT(c->WaitForClose(), IsOk());
}

TEST_F(HttpListenerTest, MalformedRequestIs400) {
  Start();
  std::unique_ptr<TestConnection> c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_THAT(c->Send("this is not http\r\n\r\n"), IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, c->ReadResponse());
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(c->WaitForClose(), IsOk());
}

// Verifies that clients that connect and then send nothing, or half a
// request, hold only their own connections.
TEST_F(HttpListenerTest, SlowClientsDoNotBlockOtherRequests) {
  Start();
  std::unique_ptr<TestConnection> silent = Connect();
  std::unique_ptr<TestConnection> partial = Connect();
  ASSERT_NE(silent, nullptr);
  ASSERT_NE(partial, nullptr);
  ASSERT_THAT(partial->Send("GET /metrics HTTP/1.1\r\nHost: "), IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(TestResponse r,
                         HttpRequest(listener_->port(), "GET", "/healthz"));
    EXPECT_EQ(r.status, 200);
  }
  // The slow ones are still open, and can still finish.
  ASSERT_THAT(partial->Send("x\r\n\r\n"), IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, partial->ReadResponse());
  EXPECT_EQ(r.status, 200);
}

TEST_F(HttpListenerTest, SilentClientIsDisconnectedAfterReadTimeout) {
  Start({.read_timeout = absl::Milliseconds(200)});
  std::unique_ptr<TestConnection> silent = Connect();
  std::unique_ptr<TestConnection> trickle = Connect();
  ASSERT_NE(silent, nullptr);
  ASSERT_NE(trickle, nullptr);
  ASSERT_THAT(trickle->Send("GET /metrics HTTP/1.1\r\n"), IsOk());
  EXPECT_THAT(silent->WaitForClose(), IsOk());
  EXPECT_THAT(trickle->WaitForClose(), IsOk());
  // An idle keep-alive connection is closed the same way.
  std::unique_ptr<TestConnection> idle = Connect();
  ASSERT_NE(idle, nullptr);
  ASSERT_THAT(idle->Send(kGetHealthz), IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, idle->ReadResponse());
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(idle->WaitForClose(), IsOk());
}

TEST_F(HttpListenerTest, ConnectionsBeyondTheCapAreClosed) {
  Start({.max_connections = 2});
  std::unique_ptr<TestConnection> a = Connect();
  std::unique_ptr<TestConnection> b = Connect();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  // Both are registered once they have been served.
  for (TestConnection* c : {a.get(), b.get()}) {
    ASSERT_THAT(c->Send(kGetHealthz), IsOk());
    ASSERT_OK_AND_ASSIGN(TestResponse r, c->ReadResponse());
    EXPECT_EQ(r.status, 200);
  }
  std::unique_ptr<TestConnection> third = Connect();
  ASSERT_NE(third, nullptr);
  EXPECT_THAT(third->WaitForClose(), IsOk());
  EXPECT_THAT(registry_.Render(),
              HasSubstr("chstream_http_connections_rejected_total 1\n"));

  // Once one closes, new connections are served again (the listener notices
  // the close asynchronously, so a refused attempt is retried).
  a->Close();
  bool served = false;
  for (int attempt = 0; attempt < 1000 && !served; ++attempt) {
    absl::StatusOr<TestResponse> r =
        HttpRequest(listener_->port(), "GET", "/healthz");
    served = r.ok() && r->status == 200;
  }
  EXPECT_TRUE(served);
}

TEST_F(HttpListenerTest, CountsRequestsByPathAndCode) {
  Start();
  ASSERT_THAT(HttpRequest(listener_->port(), "GET", "/healthz"), IsOk());
  ASSERT_THAT(HttpRequest(listener_->port(), "GET", "/healthz"), IsOk());
  ASSERT_THAT(HttpRequest(listener_->port(), "GET", "/nope"), IsOk());
  ASSERT_THAT(HttpRequest(listener_->port(), "POST", "/metrics"), IsOk());
  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("chstream_http_requests_total{path=\"/healthz\","
                              "code=\"200\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("chstream_http_requests_total{path=\"other\","
                              "code=\"404\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("chstream_http_requests_total{path=\"/metrics\","
                              "code=\"405\"} 1\n"));
}

// Verifies the extra routes (the status page's): their status, type and body,
// Cache-Control, HEAD, and their own label in chstream_http_requests_total.
TEST_F(HttpListenerTest, ServesExtraRoutes) {
  int calls = 0;
  HttpListener::Options options;
  options.handlers["/status.json"] = [&calls] {
    ++calls;
    return HttpResponse{.status = 200,
                        .content_type = "application/json",
                        .body = absl::StrCat("{\"calls\":", calls, "}")};
  };
  options.handlers["/broken"] = [] {
    return HttpResponse{.status = 503, .body = "no status\n"};
  };
  Start(options);
  ASSERT_OK_AND_ASSIGN(TestResponse r, HttpRequest(listener_->port(), "GET",
                                                   "/status.json?x=1"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("cache-control"), "no-store");
  EXPECT_EQ(r.body, "{\"calls\":1}");
  ASSERT_OK_AND_ASSIGN(r,
                       HttpRequest(listener_->port(), "HEAD", "/status.json"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-length"), "11");
  ASSERT_OK_AND_ASSIGN(r, HttpRequest(listener_->port(), "GET", "/broken"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "no status\n");
  ASSERT_OK_AND_ASSIGN(r, HttpRequest(listener_->port(), "GET", "/status"));
  EXPECT_EQ(r.status, 404);
  const std::string text = registry_.Render();
  EXPECT_THAT(text,
              HasSubstr("chstream_http_requests_total{path=\"/status.json\","
                        "code=\"200\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("chstream_http_requests_total{path=\"/broken\","
                              "code=\"503\"} 1\n"));
}

TEST(HttpListenerStartTest, RejectsExtraRoutesThatShadowBuiltIns) {
  MetricsRegistry registry;
  for (const char* path : {"/metrics", "/readyz", "relative", ""}) {
    HttpListener::Options options{.address = "127.0.0.1:0"};
    options.handlers[path] = [] { return HttpResponse{}; };
    EXPECT_THAT(
        HttpListener::Start(options, &registry, nullptr),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("route")))
        << path;
  }
}

TEST_F(HttpListenerTest, StopClosesOpenConnections) {
  Start();
  std::unique_ptr<TestConnection> idle = Connect();
  std::unique_ptr<TestConnection> partial = Connect();
  std::unique_ptr<TestConnection> served = Connect();
  ASSERT_NE(idle, nullptr);
  ASSERT_NE(partial, nullptr);
  ASSERT_NE(served, nullptr);
  ASSERT_THAT(partial->Send("GET /metrics HTTP/1.1\r\n"), IsOk());
  ASSERT_THAT(served->Send(kGetHealthz), IsOk());
  ASSERT_OK_AND_ASSIGN(TestResponse r, served->ReadResponse());
  EXPECT_EQ(r.status, 200);

  const int port = listener_->port();
  listener_->Stop();
  EXPECT_THAT(idle->WaitForClose(), IsOk());
  EXPECT_THAT(partial->WaitForClose(), IsOk());
  EXPECT_THAT(served->WaitForClose(), IsOk());
  // Nothing listens any more.
  EXPECT_FALSE(TestConnection::Connect(port).ok());
  listener_->Stop();  // idempotent
  listener_.reset();
}

TEST(HttpListenerStartTest, RejectsBadAddressesAndBusyPorts) {
  MetricsRegistry registry;
  EXPECT_THAT(
      HttpListener::Start({.address = "no-port"}, &registry, nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host:port")));
  EXPECT_THAT(
      HttpListener::Start({.address = "example.com:80"}, &registry, nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("IP address")));
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<HttpListener> first,
      HttpListener::Start({.address = "127.0.0.1:0"}, &registry, nullptr));
  EXPECT_THAT(
      HttpListener::Start(
          {.address = absl::StrCat("127.0.0.1:", first->port())}, &registry,
          nullptr),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot listen")));
}

TEST(ParseListenAddressTest, AcceptsHostPortForms) {
  std::string host;
  int port = -1;
  ASSERT_THAT(ParseListenAddress("127.0.0.1:9464", &host, &port), IsOk());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9464);
  ASSERT_THAT(ParseListenAddress(":0", &host, &port), IsOk());
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_EQ(port, 0);
  ASSERT_THAT(ParseListenAddress("[::1]:80", &host, &port), IsOk());
  EXPECT_EQ(host, "::1");
  ASSERT_THAT(ParseListenAddress("localhost:1", &host, &port), IsOk());
  EXPECT_EQ(host, "127.0.0.1");
  for (const char* bad :
       {"", "1.2.3.4", "1.2.3.4:", "1.2.3.4:x", "1.2.3.4:65536", "::1:80",
        "host.example:80", "1.2.3.4:-1"}) {
    EXPECT_THAT(ParseListenAddress(bad, &host, &port),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << bad;
  }
}

}  // namespace
}  // namespace chstream::server
