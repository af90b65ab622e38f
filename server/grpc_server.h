// File: server/grpc_server.h
//
// Runs chstream's gRPC server: the CompanyStream service, grpc.health.v1
// (service "" and "chstream.v1.CompanyStream") and server reflection, with
// explicit keepalive settings, a ticker for subscriber heartbeats, and an
// orderly shutdown.
//
// Shutdown(): health goes NOT_SERVING, subscribers end with UNAVAILABLE
// after their pending write, new calls are refused, and calls still open at
// the deadline are cancelled.
//
//   ASSIGN_OR_RETURN(auto server, GrpcServer::Start("127.0.0.1:0", &service));
//   ... server->port() ...
//   server->Shutdown(absl::Seconds(4));
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/company_stream_service.h"

namespace chstream::server {

inline constexpr char kServiceName[] = "chstream.v1.CompanyStream";

// Limits the server sets on every connection (documented in README,
// "Connecting clients").
inline constexpr int kMaxConcurrentStreamsPerConnection = 1000;
inline constexpr int kMaxReceiveMessageBytes = 256 << 10;
inline constexpr int kMaxMetadataBytes = 16 << 10;
inline constexpr int kMaxPingStrikes = 2;

class GrpcServer {
 public:
  // `service` must outlive the server.
  using Interceptors = std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>;

  // `credentials` secure the listening port (TLS, bearer tokens: see
  // server/grpc_credentials.h); nullptr means plaintext
  // (grpc::InsecureServerCredentials()).
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const std::string& address, CompanyStreamService* service,
      Interceptors interceptors = {},
      std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);
  ~GrpcServer();

  int port() const { return port_; }
  grpc::Server* server() { return server_.get(); }

  // Sets the serving status of a health-check service name.
  void SetHealth(const std::string& name, bool serving);

  // Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;

  CompanyStreamService* service_ = nullptr;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Notification stop_ticker_;
  std::thread ticker_;
  bool shut_down_ = false;
};

}  // namespace chstream::server
