// Tests for server/daemon.h: the whole chstreamd in-process (real SQLite
// file, real simulator over HTTP, real gRPC server on port 0).
#include "server/daemon.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/clock.h"
#include "base/testing/status_matchers.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "storage/store.h"
#include "tests/server/metrics_http_client.h"
#include "tests/storage/test_util.h"
#include "tests/testing/loopback.h"

namespace chstream::server {
namespace {

using ::chstream::testing::BindLoopback;
using storage::testing::MakeEvent;
using storage::testing::TestDbPath;
using storage::testing::WaitUntil;

Config TestConfig(const std::string& db_path) {
  Config c;
  c.db_path = db_path;
  c.grpc_address = "127.0.0.1:0";
  c.metrics_address = "127.0.0.1:0";
  c.simulate = true;
  c.simulator_rate = 200;
  c.log_level = "warning";
  return c;
}

std::unique_ptr<v1::CompanyStream::Stub> Connect(int port) {
  return v1::CompanyStream::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
}

absl::StatusOr<v1::GetStatusResponse> Status(v1::CompanyStream::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatusResponse response;
  grpc::Status s = stub.GetStatus(&ctx, v1::GetStatusRequest(), &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response;
}

TEST(DaemonTest, IngestsFromTheSimulatorAndServesIt) {
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Daemon> daemon,
      Daemon::Start(TestConfig(TestDbPath()), Clock::Real(), &exit_code));
  ASSERT_GT(daemon->grpc_port(), 0);
  ASSERT_GT(daemon->http_port(), 0);
  auto stub = Connect(daemon->grpc_port());
  EXPECT_TRUE(WaitUntil([&] {
    absl::StatusOr<v1::GetStatusResponse> s = Status(*stub);
    return s.ok() && s->store().head_position() > 10;
  }));
  daemon->Stop();
  daemon->Stop();  // idempotent
  EXPECT_EQ(daemon->store(), nullptr);
}

TEST(DaemonTest, BadSettingFailsWithExitCode2) {
  Config c = TestConfig(TestDbPath());
  c.grpc_address = "0.0.0.0:0";  // plaintext on every interface
  int exit_code = -1;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start(c, Clock::Real(), &exit_code);
  EXPECT_FALSE(daemon.ok());
  EXPECT_EQ(exit_code, 2);
}

// A gRPC port that another process holds is a clear start-up error (exit
// 1: the environment, not a setting), not a crash: the failed server was
// shut down as if it had started (a null dereference, SIGSEGV).
TEST(DaemonTest, GrpcPortInUseFailsWithExitCode1) {
  int port = 0;
  ASSERT_OK_AND_ASSIGN(const int fd, BindLoopback(&port));
  ASSERT_EQ(listen(fd, 1), 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);

  Config c = TestConfig(TestDbPath());
  c.grpc_address = address;
  int exit_code = -1;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start(c, Clock::Real(), &exit_code);
  close(fd);
  ASSERT_FALSE(daemon.ok());
  EXPECT_EQ(exit_code, 1);
  EXPECT_NE(daemon.status().message().find("--grpc_address=" + address),
            std::string::npos)
      << daemon.status();
}

// /readyz means "can serve reads": an upstream that refuses every
// connection (Companies House down) leaves it 200 and GetStatus answering,
// so a load balancer keeps the replica; the stream's own state says why.
TEST(DaemonTest, ReadyWhileTheUpstreamIsDown) {
  int port = 0;
  ASSERT_OK_AND_ASSIGN(const int fd, BindLoopback(&port));
  close(fd);  // nothing listens there: every connect is refused

  Config c = TestConfig(TestDbPath());
  c.simulate = false;
  c.api_keys = {"test-key"};
  c.upstream_url = absl::StrCat("http://127.0.0.1:", port);
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(c, Clock::Real(), &exit_code));
  auto stub = Connect(daemon->grpc_port());
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::GetStatusResponse> s = Status(*stub);
        return s.ok() && s->streams_size() > 0 &&
               !s->streams(0).last_error().empty();
      },
      absl::Seconds(20)));
  ASSERT_OK_AND_ASSIGN(testing::TestResponse ready,
                       testing::HttpRequest(daemon->http_port(), "GET",
                                            "/readyz"));
  EXPECT_EQ(ready.status, 200) << ready.body;
}

// Verifies --writer_queue_bytes (flag or CHSTREAM_WRITER_QUEUE_BYTES, 32 MiB
// by default) reaches the writer's options.
TEST(DaemonTest, WriterQueueBytesSettingReachesTheWriter) {
  ConfigExit exit_request{-1, ""};
  ASSERT_OK_AND_ASSIGN(Config defaults, LoadConfig({}, {}, &exit_request));
  EXPECT_EQ(WriterOptionsFrom(defaults).queue_bytes, size_t{32} << 20);
  ASSERT_OK_AND_ASSIGN(
      Config from_env,
      LoadConfig({}, {{"CHSTREAM_WRITER_QUEUE_BYTES", "1048576"}},
                 &exit_request));
  EXPECT_EQ(WriterOptionsFrom(from_env).queue_bytes, size_t{1} << 20);
  ASSERT_OK_AND_ASSIGN(
      Config from_flag,
      LoadConfig({"--writer_queue_bytes=2097152"}, {}, &exit_request));
  EXPECT_EQ(WriterOptionsFrom(from_flag).queue_bytes, size_t{2} << 20);
  EXPECT_FALSE(LoadConfig({"--writer_queue_bytes=12"}, {}, &exit_request).ok());
}

// Verifies the parts are destroyed in an order that lets queued storage page
// reads finish: the executor (which runs ReplayEvents' page reads) must be
// drained before the service and the store they use are destroyed. Run
// under asan, a wrong order shows as heap-use-after-free.
TEST(DaemonTest, StopWhileReplayPageReadsAreQueued) {
  const std::string path = TestDbPath();
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::Store> store,
                         storage::Store::Open(path));
    storage::Batch batch;
    for (int i = 1; i <= 50000; ++i) {
      batch.events.push_back(MakeEvent("filings", i));
    }
    ASSERT_OK(store->Commit(std::move(batch), absl::Now()).status());
  }
  Config c = TestConfig(path);
  c.simulator_rate = 0;
  c.streams = {"filings"};
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(c, Clock::Real(), &exit_code));
  auto stub = Connect(daemon->grpc_port());

  // Replays with a filter that matches nothing: they only scan storage,
  // page after page, on the 2-thread executor.
  constexpr int kReplays = 16;
  std::vector<std::thread> clients;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  for (int i = 0; i < kReplays; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
  }
  for (int i = 0; i < kReplays; ++i) {
    clients.emplace_back([&, ctx = contexts[i].get()] {
      v1::ReplayEventsRequest request;
      request.mutable_start()->set_beginning(true);
      request.mutable_filter()->add_company_numbers("SC999999");
      auto reader = stub->ReplayEvents(ctx, request);
      v1::Event event;
      while (reader->Read(&event)) {
      }
      reader->Finish();
    });
  }
  // Page reads are running and queued.
  EXPECT_TRUE(WaitUntil(
      [&] { return daemon->service()->pages_read() >= 2 * kReplays; }));
  daemon->Stop();
  for (std::thread& t : clients) t.join();
}

// "ingest" in grpc.health.v1, or NOT_FOUND/UNKNOWN on error.
grpc::health::v1::HealthCheckResponse::ServingStatus IngestHealth(int port) {
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(kIngestHealthService);
  grpc::health::v1::HealthCheckResponse response;
  if (!health->Check(&ctx, request, &response).ok()) {
    return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

bool HasStorageIssue(const v1::GetStatusResponse& s, const std::string& text) {
  for (const v1::HealthIssue& issue : s.health().issues()) {
    if (issue.rule() == "storage" && issue.severity() == "failed" &&
        issue.message().find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Stops `daemon` on another thread; false if it takes longer than `limit`
// (the thread is then left behind: the test has failed).
bool StopsWithin(Daemon* daemon, absl::Duration limit) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> stopped = done->get_future();
  std::thread([daemon, done] {
    daemon->Stop();
    done->set_value();
  }).detach();
  return stopped.wait_for(absl::ToChronoSeconds(limit)) ==
         std::future_status::ready;
}

// Verifies a full disk (real SQLITE_FULL: the database may not grow) fails
// health within seconds with the SQLite error and turns "ingest"
// NOT_SERVING while reads go on; when space comes back the same daemon
// carries on by itself; and Stop ends within 10 s while the disk is full
// (the io thread must not stay blocked on the full writer queue).
TEST(DaemonTest, FullDiskFailsHealthRecoversAndStopsInTime) {
  Config c = TestConfig(TestDbPath());
  c.simulator_rate = 2000;
  c.writer_queue = 256;  // fills at once while commits fail
  int exit_code = -1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(c, Clock::Real(), &exit_code));
  auto stub = Connect(daemon->grpc_port());
  ASSERT_TRUE(WaitUntil([&] {
    absl::StatusOr<v1::GetStatusResponse> s = Status(*stub);
    return s.ok() && s->store().head_position() > 100;
  }));

  // The database may not grow any more: every commit fails with
  // SQLITE_FULL ("database or disk is full").
  daemon->sqlite_store()->SetMaxPageCountForTest(1);
  EXPECT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::GetStatusResponse> s = Status(*stub);
        return s.ok() && s->health().overall() == "failed" &&
               HasStorageIssue(*s, "full");
      },
      absl::Seconds(10)));
  EXPECT_TRUE(WaitUntil(
      [&] {
        return IngestHealth(daemon->grpc_port()) ==
               grpc::health::v1::HealthCheckResponse::NOT_SERVING;
      },
      absl::Seconds(10)));
  absl::StatusOr<v1::GetStatusResponse> during = Status(*stub);
  ASSERT_TRUE(during.ok());  // reads are still served, and /readyz says so
  ASSERT_OK_AND_ASSIGN(testing::TestResponse ready,
                       testing::HttpRequest(daemon->http_port(), "GET",
                                            "/readyz"));
  EXPECT_EQ(ready.status, 200) << ready.body;
  const uint64_t head = during->store().head_position();

  // Space comes back: commits resume, health recovers.
  daemon->sqlite_store()->SetMaxPageCountForTest(0);
  EXPECT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::GetStatusResponse> s = Status(*stub);
        return s.ok() && s->health().overall() == "healthy" &&
               s->store().head_position() > head + 100;
      },
      absl::Seconds(20)));
  EXPECT_TRUE(WaitUntil(
      [&] {
        return IngestHealth(daemon->grpc_port()) ==
               grpc::health::v1::HealthCheckResponse::SERVING;
      },
      absl::Seconds(10)));

  // Full again, then stop: within 10 s.
  daemon->sqlite_store()->SetMaxPageCountForTest(1);
  EXPECT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<v1::GetStatusResponse> s = Status(*stub);
        return s.ok() && s->health().overall() == "failed";
      },
      absl::Seconds(10)));
  if (!StopsWithin(daemon.get(), absl::Seconds(10))) {
    ADD_FAILURE() << "Daemon::Stop did not return within 10 s";
    std::_Exit(1);
  }
}

}  // namespace
}  // namespace chstream::server
