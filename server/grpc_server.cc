#include "server/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "grpc/health/v1/health.pb.h"

namespace chstream::server {
namespace {

// Linking health.pb.cc puts grpc.health.v1 in the generated descriptor pool
// so that reflection can describe the built-in (upb) health service. This
// reference keeps the linker from dropping it.
const void* const kHealthDescriptor =
    grpc::health::v1::HealthCheckRequest::descriptor();

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const std::string& address, CompanyStreamService* service,
    Interceptors interceptors,
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  (void)kHealthDescriptor;
  // Both must be called before the ServerBuilder is created.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<GrpcServer> s(new GrpcServer());
  s->service_ = service;
  grpc::ServerBuilder builder;
  if (credentials == nullptr) credentials = grpc::InsecureServerCredentials();
  builder.AddListeningPort(address, credentials, &s->port_);
  builder.RegisterService(service);
  // Keepalive: ping idle connections every 60 s so that dead peers and
  // proxies dropping idle streams are noticed; accept client pings every
  // 10 s or more, also without calls.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Enforcement: a client pinging more often than that gets a strike; after
  // kMaxPingStrikes the connection is closed with GOAWAY
  // (ENHANCE_YOUR_CALM, "too_many_pings").
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, kMaxPingStrikes);
  // One connection cannot open an unbounded number of calls (each open
  // Subscribe or ReplayEvents also counts against --max_subscribers or
  // --max_replays).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             kMaxConcurrentStreamsPerConnection);
  // Requests are small (the largest, a filter of 1,000 company numbers, is
  // ~12 KB): refuse anything larger before parsing it.
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, kMaxMetadataBytes);
  if (!interceptors.empty()) {
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --grpc_address=", address,
                     " (address in use, or not an address of this machine?)"));
  }
  s->SetHealth("", true);
  s->SetHealth(kServiceName, true);
  s->ticker_ = std::thread([raw = s.get()] {
    SetCurrentThreadName("chs-ticker");
    while (!raw->stop_ticker_.WaitForNotificationWithTimeout(
        absl::Milliseconds(200))) {
      raw->service_->subscribers().Tick();
    }
  });
  return s;
}

GrpcServer::~GrpcServer() { Shutdown(absl::Seconds(1)); }

void GrpcServer::SetHealth(const std::string& name, bool serving) {
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService()) {
    health->SetServingStatus(name, serving);
  }
}

void GrpcServer::Shutdown(absl::Duration grace) {
  // A server that never started (its port could not be bound) has nothing
  // to stop: Start's failure path destroys it.
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  service_->subscribers().Shutdown();
  server_->Shutdown(absl::ToChronoTime(Clock::Real()->Now() + grace));
  stop_ticker_.Notify();
  if (ticker_.joinable()) ticker_.join();
}

}  // namespace chstream::server
