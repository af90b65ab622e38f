// File: tests/integration/test_server.h
//
// An in-process chstream gRPC server on 127.0.0.1:0 over a real SQLite file
// in TEST_TMPDIR, wired like chstreamd (store, writer, hub, service), for
// integration tests with a real channel.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "server/company_stream_service.h"
#include "server/executor.h"
#include "server/grpc_server.h"
#include "server/subscription_hub.h"
#include "storage/event_writer.h"
#include "storage/store.h"

namespace chstream::testing {

struct TestServerOptions {
  std::string db_name;  // default: a new file per server
  int max_subscribers = 1000;
  size_t subscriber_queue = 1024;
  size_t page_size = 512;
  size_t subscriber_queue_bytes = 8 << 20;
  size_t max_scan = 20000;
  absl::Duration max_subscriber_lag = absl::ZeroDuration();
  // Off unless a test sets it (tests advance FakeClocks by large steps).
  absl::Duration subscriber_write_timeout = absl::ZeroDuration();
  int max_replays = 0;
  // Runs before each storage read task of the service (e.g. to make every
  // page read take time on a FakeClock).
  std::function<void()> before_read;
  // Runs just before each StartWrite (ServiceOptions::before_start_write).
  std::function<void()> before_start_write;
  Clock* clock = Clock::Real();
};

class TestServer {
 public:
  explicit TestServer(TestServerOptions options = {});
  ~TestServer();

  storage::Store* store() { return store_.get(); }
  storage::EventWriter* writer() { return writer_.get(); }
  server::SubscriptionHub* hub() { return &hub_; }
  server::CompanyStreamService* service() { return service_.get(); }
  server::GrpcServer* grpc() { return grpc_.get(); }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  std::unique_ptr<v1::CompanyStream::Stub> stub() {
    return v1::CompanyStream::NewStub(channel_);
  }
  std::string address() const;

  // Commits events through the writer (positions assigned, hub notified)
  // as one transaction (up to EventWriter's max_batch) and waits until they
  // are committed.
  void CommitAndWait(std::vector<storage::Event> events);

  void Shutdown(absl::Duration grace = absl::Seconds(2));

 private:
  TestServerOptions options_;
  std::unique_ptr<storage::Store> store_;
  server::SubscriptionHub hub_;
  std::unique_ptr<server::Executor> executor_;
  std::unique_ptr<server::Executor> read_executor_;
  std::unique_ptr<storage::EventWriter> writer_;
  std::unique_ptr<server::CompanyStreamService> service_;
  std::unique_ptr<server::GrpcServer> grpc_;
  std::shared_ptr<grpc::Channel> channel_;
};

// A realistic event of `stream` with the given timepoint; company-profile
// events carry typed company fields and data.
storage::Event MakeEvent(
    const std::string& stream, int64_t timepoint,
    const std::string& company_number,
    storage::EventType type = storage::EventType::kChanged);

// google.protobuf.Struct wire bytes for {key: value}.
std::string StructWithString(const std::string& key, const std::string& value);

}  // namespace chstream::testing
