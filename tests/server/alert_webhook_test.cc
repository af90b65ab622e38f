// Tests of server/alert_webhook.h against a local Beast HTTP listener on
// 127.0.0.1:0: delivery, retry after 500, giving up, redaction, a dead
// endpoint that never answers (the caller is never blocked), and the health
// monitor posting its alerts.
#include "server/alert_webhook.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/health_monitor.h"

namespace chstream::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using ::chstream::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

// Answers each POST with the next status of `statuses` (the last one
// repeats) and records what it received.
class TestHttpServer {
 public:
  struct Request {
    std::string target;
    std::string content_type;
    std::string body;
  };

  explicit TestHttpServer(std::vector<int> statuses)
      : statuses_(std::move(statuses)),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { Serve(); });
  }
  ~TestHttpServer() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    // Unblock accept().
    tcp::socket s(io_);
    beast::error_code ec;
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
    thread_.join();
  }

  std::string url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  std::vector<Request> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  void Serve() {
    while (true) {
      tcp::socket socket(io_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      if (ec) continue;
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      int status;
      {
        absl::MutexLock lock(&mu_);
        requests_.push_back({std::string(req.target()),
                             std::string(req[http::field::content_type]),
                             req.body()});
        status = statuses_[std::min(requests_.size(), statuses_.size()) - 1];
      }
      http::response<http::string_body> res{
          static_cast<http::status>(status), 11};
      res.body() = "ok";
      res.prepare_payload();
      http::write(socket, res, ec);
      socket.shutdown(tcp::socket::shutdown_both, ec);
    }
  }

  const std::vector<int> statuses_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  mutable absl::Mutex mu_;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

AlertWebhook::Options FastOptions(const std::string& url) {
  AlertWebhook::Options o;
  o.url = url;
  o.timeout = absl::Seconds(10);
  o.initial_backoff = absl::Milliseconds(10);
  return o;
}

TEST(AlertWebhookTest, PostsJson) {
  TestHttpServer server({200});
  ASSERT_OK_AND_ASSIGN(auto webhook,
                       AlertWebhook::Start(FastOptions(server.url("/hooks/a"))));
  webhook->Enqueue(R"({"stream":"companies"})");
  ASSERT_TRUE(webhook->WaitForSettled(1, absl::Seconds(20)));
  AlertWebhook::Stats stats = webhook->GetStats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.failed_attempts, 0u);
  std::vector<TestHttpServer::Request> r = server.requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].target, "/hooks/a");
  EXPECT_EQ(r[0].content_type, "application/json");
  EXPECT_EQ(r[0].body, R"({"stream":"companies"})");
}

TEST(AlertWebhookTest, RetriesAfterServerError) {
  TestHttpServer server({500, 200});
  ASSERT_OK_AND_ASSIGN(auto webhook,
                       AlertWebhook::Start(FastOptions(server.url("/"))));
  webhook->Enqueue("{}");
  ASSERT_TRUE(webhook->WaitForSettled(1, absl::Seconds(20)));
  AlertWebhook::Stats stats = webhook->GetStats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.failed_attempts, 1u);
  EXPECT_EQ(stats.failures, 0u);
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(AlertWebhookTest, GivesUpAfterMaxAttempts) {
  TestHttpServer server({500});
  ASSERT_OK_AND_ASSIGN(auto webhook,
                       AlertWebhook::Start(FastOptions(server.url("/"))));
  webhook->Enqueue("{}");
  ASSERT_TRUE(webhook->WaitForSettled(1, absl::Seconds(20)));
  AlertWebhook::Stats stats = webhook->GetStats();
  EXPECT_EQ(stats.delivered, 0u);
  EXPECT_EQ(stats.failed_attempts, 3u);
  EXPECT_EQ(stats.failures, 1u);
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST(AlertWebhookTest, RedactsSecrets) {
  log::AddSecret("webhook-test-secret");
  TestHttpServer server({200});
  ASSERT_OK_AND_ASSIGN(auto webhook,
                       AlertWebhook::Start(FastOptions(server.url("/"))));
  webhook->Enqueue(R"({"error":"bad key webhook-test-secret"})");
  ASSERT_TRUE(webhook->WaitForSettled(1, absl::Seconds(20)));
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_THAT(server.requests()[0].body, Not(HasSubstr("webhook-test-secret")));
  EXPECT_THAT(server.requests()[0].body, HasSubstr("[REDACTED]"));
}

// Verifies that the webhook's URL is logged without its path and query:
// Slack and Teams webhooks carry their secret in the path.
TEST(AlertWebhookTest, LogsTheUrlWithoutPathOrQuery) {
  std::vector<std::string> lines;
  absl::Mutex lines_mu;
  log::SetSinkForTest([&](std::string_view line) {
    absl::MutexLock lock(&lines_mu);
    lines.emplace_back(line);
  });
  TestHttpServer server({500});
  AlertWebhook::Options o =
      FastOptions(server.url("/services/T000/B000/XyZhooksecret?token=tok42"));
  o.max_attempts = 2;
  ASSERT_OK_AND_ASSIGN(auto webhook, AlertWebhook::Start(o));
  webhook->Enqueue("{}");
  ASSERT_TRUE(webhook->WaitForSettled(1, absl::Seconds(20)));
  webhook->Stop();
  log::SetSinkForTest(nullptr);
  ASSERT_EQ(server.requests().size(), 2u);
  EXPECT_EQ(server.requests()[0].target,
            "/services/T000/B000/XyZhooksecret?token=tok42");
  absl::MutexLock lock(&lines_mu);
  ASSERT_GE(lines.size(), 3u);  // two failed attempts, then gave up
  for (const std::string& line : lines) {
    EXPECT_THAT(line, Not(HasSubstr("XyZhooksecret"))) << line;
    EXPECT_THAT(line, Not(HasSubstr("tok42"))) << line;
  }
  EXPECT_THAT(lines.back(), HasSubstr("127.0.0.1"));

  absl::Status bad =
      AlertWebhook::Start(FastOptions("https://user:hunter2@host/x")).status();
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            Not(HasSubstr("hunter2"))));
}

// Verifies an endpoint that accepts but never answers neither blocks
// Enqueue (the queue drops the oldest) nor Stop (the request is cancelled).
TEST(AlertWebhookTest, DeadEndpointDoesNotBlock) {
  asio::io_context io;
  // Listening, never accepting: connects complete in the backlog.
  tcp::acceptor dead(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  AlertWebhook::Options o = FastOptions(
      absl::StrCat("http://127.0.0.1:", dead.local_endpoint().port(), "/"));
  o.timeout = absl::Minutes(10);
  o.queue_capacity = 2;
  ASSERT_OK_AND_ASSIGN(auto webhook, AlertWebhook::Start(o));
  for (int i = 0; i < 10; ++i) webhook->Enqueue(absl::StrCat("{\"n\":", i, "}"));
  // One is in flight (or still queued); the rest beyond 2 queued were
  // dropped.
  AlertWebhook::Stats stats = webhook->GetStats();
  EXPECT_EQ(stats.enqueued, 10u);
  EXPECT_GE(stats.dropped, 7u);
  EXPECT_EQ(stats.delivered, 0u);
  const absl::Time before = Clock::Real()->Now();
  webhook->Stop();
  EXPECT_LT(Clock::Real()->Now() - before, absl::Seconds(5));
  stats = webhook->GetStats();
  EXPECT_EQ(stats.delivered + stats.failures + stats.dropped, 10u);
  webhook->Enqueue("{}");  // after Stop: dropped, not blocking
  EXPECT_EQ(webhook->GetStats().dropped, stats.dropped + 1);
}

TEST(AlertWebhookTest, RejectsBadUrls) {
  EXPECT_THAT(AlertWebhook::Start(FastOptions("ftp://example.com/")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(AlertWebhook::Start(FastOptions("http://:99/")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(AlertWebhookTest, HealthMonitorPostsItsAlerts) {
  TestHttpServer server({200});
  ASSERT_OK_AND_ASSIGN(auto webhook,
                       AlertWebhook::Start(FastOptions(server.url("/alert"))));
  FakeClock clock;
  HealthMonitor::Options options;
  options.streams = {"companies"};
  HealthMonitor::Deps deps;
  deps.clock = &clock;
  deps.snapshots = [] {
    ingest::StreamStatusSnapshot s;
    s.stream = "companies";
    s.state = ingest::StreamState::kAuthFailed;
    s.last_http_status = 401;
    return std::vector<ingest::StreamStatusSnapshot>{s};
  };
  deps.webhook = webhook.get();
  HealthMonitor monitor(options, deps);
  MetricsRegistry registry;
  monitor.RegisterMetrics(registry);
  monitor.Tick();
  monitor.Tick();  // no transition: no second alert
  ASSERT_TRUE(webhook->WaitForSettled(1, absl::Seconds(20)));
  std::vector<TestHttpServer::Request> r = server.requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_THAT(r[0].body, HasSubstr(R"("state":"failed","previous":"healthy")"));
  EXPECT_THAT(r[0].body, HasSubstr(R"("rule":"auth_failed")"));
  EXPECT_THAT(registry.Render(),
              HasSubstr("chstream_alert_webhook_delivered_total 1"));
  EXPECT_THAT(registry.Render(),
              HasSubstr("chstream_alert_webhook_failures_total 0"));
}

}  // namespace
}  // namespace chstream::server
