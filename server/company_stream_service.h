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
  absl::Duration max_subscriber_lag = absl::ZeroDuration();
  // Events per storage page during replay and catch-up.
  size_t page_size = 512;
};

class CompanyStreamService final : public v1::CompanyStream::CallbackService {
 public:
  using StreamStatusFn =
      std::function<std::vector<ingest::StreamStatusSnapshot>()>;

  // `store`, `hub`, `executor` and `clock` must outlive the service.
  CompanyStreamService(storage::Store* store, SubscriptionHub* hub,
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
  storage::Store* const store_;
  SubscriptionHub* const hub_;
  const StreamStatusFn stream_status_;
  Clock* const clock_;
  const ServiceOptions options_;
  SubscriberRegistry registry_;
  std::atomic<uint64_t> pages_read_{0};
  const StreamContext stream_ctx_;
  absl::Mutex health_mu_;
  HealthFiller health_filler_ ABSL_GUARDED_BY(health_mu_);
};

}  // namespace chstream::server
