// File: server/company_stream_service.h
//
// chstream.v1.CompanyStream on the gRPC callback API.
//
// GetStatus and GetCompany answer from storage (and from the ingest status
// callback); ReplayEvents and Subscribe stream stored, then live, events
// (server/replay_reactor.h, server/subscribe_reactor.h).
//
// Thread-safety: all methods are called concurrently by gRPC; the service
// holds no mutable state of its own beyond what its dependencies guard.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "ingest/stream_status.h"
#include "server/executor.h"
#include "server/stream_reactors.h"
#include "server/subscription_hub.h"
#include "storage/store.h"

namespace chstream::server {

struct ServiceOptions {
  std::string version = "dev";
  std::string upstream;  // URL, or "simulator"
  absl::Time started_at = absl::UnixEpoch();
  int max_subscribers = 1000;
  size_t subscriber_queue = 1024;
  // A subscriber's live queue also overflows beyond this many bytes.
  size_t subscriber_queue_bytes = 8 << 20;
  absl::Duration max_subscriber_lag = absl::ZeroDuration();
  // A write to a ReplayEvents or Subscribe call not completed within this
  // ends the call (RESOURCE_EXHAUSTED); 0 = never.
  absl::Duration subscriber_write_timeout = absl::Seconds(30);
  // Concurrent ReplayEvents calls; 0 = no limit.
  int max_replays = 32;
  // Events per storage page during replay and catch-up.
  size_t page_size = 512;
  // Positions examined per storage page at most (a narrow filter).
  size_t max_scan = 20000;
  // Storage reads for replay and catch-up run on their own executor, apart
  // from live sends: `read_executor` if set (must outlive the service),
  // else one of `read_threads` threads owned by the service.
  Executor* read_executor = nullptr;
  int read_threads = 2;
  // Fills GetStatus.replica (server/replica_state.h); unset: left empty.
  std::function<void(v1::ReplicaStatus*)> replica;
  // Tests only (StreamContext::before_start_write).
  std::function<void()> before_start_write;
};

class CompanyStreamService final : public v1::CompanyStream::CallbackService {
 public:
  using StreamStatusFn =
      std::function<std::vector<ingest::StreamStatusSnapshot>()>;

  // `store`, `hub`, `executor` and `clock` must outlive the service.
  // `executor` runs live delivery; storage reads run on
  // options.read_executor or the service's own read threads.
  CompanyStreamService(storage::EventStore* store, SubscriptionHub* hub,
                       Executor* executor, StreamStatusFn stream_status,
                       Clock* clock, ServiceOptions options);

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override;
  grpc::ServerUnaryReactor* GetCompany(grpc::CallbackServerContext* ctx,
                                       const v1::GetCompanyRequest* request,
                                       v1::Company* response) override;
  grpc::ServerWriteReactor<v1::Event>* ReplayEvents(
      grpc::CallbackServerContext* ctx,
      const v1::ReplayEventsRequest* request) override;
  grpc::ServerWriteReactor<v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* ctx,
      const v1::SubscribeRequest* request) override;

  // Fills a status response (also used by health and metrics).
  absl::Status FillStatus(v1::GetStatusResponse* response);

  // Fills GetStatus's `health` section (HealthMonitor::FillHealth); empty =
  // the section is left unset. Thread-safe; may be set after serving began.
  using HealthFiller = std::function<void(v1::HealthStatus*)>;
  void SetHealthFiller(HealthFiller filler);

  SubscriberRegistry& subscribers() { return registry_; }
  // Storage pages read by ReplayEvents and Subscribe catch-up so far.
  uint64_t pages_read() const { return pages_read_.load(); }

 private:
  storage::EventStore* const store_;
  SubscriptionHub* const hub_;
  const StreamStatusFn stream_status_;
  Clock* const clock_;
  const ServiceOptions options_;
  SubscriberRegistry registry_;
  std::atomic<uint64_t> pages_read_{0};
  StreamContext stream_ctx_;
  absl::Mutex health_mu_;
  HealthFiller health_filler_ ABSL_GUARDED_BY(health_mu_);
  // Last: destroyed first, running its pending reads while everything
  // they touch is still alive.
  std::unique_ptr<Executor> own_read_executor_;
};

}  // namespace chstream::server
