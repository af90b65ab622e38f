// File: server/grpc_metrics_interceptor.h
//
// A gRPC server interceptor that counts every RPC, times it, and writes one
// structured log line when it ends:
//
//   chstream_grpc_requests_total{method,code}          counter
//   chstream_grpc_request_duration_seconds{method}     histogram
//   {"msg":"grpc call","method":"/chstream.v1.CompanyStream/GetStatus",
//    "peer":"ipv4:127.0.0.1:53412","code":"OK","duration_seconds":0.0012}
//
// `method` is the full path ("/package.Service/Method"); `code` the status
// name ("OK", "NOT_FOUND", ...). The duration runs from when the server
// created the call to when gRPC reported it closed, so for streaming calls
// it is the stream's lifetime. The code is the status the handler sent, or
// CANCELLED when the call closed without one (client cancel, deadline,
// shutdown). Calls to methods outside Options::known_methods (or beyond
// Options::max_methods distinct ones) are recorded as method="other", so
// clients cannot grow the series without bound.
//
// Non-OK calls log at warning level, except CANCELLED; OK and CANCELLED
// calls to Options::quiet_methods (load-balancer health checks) log at debug
// level.
//
// Ownership: grpc::ServerBuilder owns the factory; `registry` and `clock`
// must outlive the server.
// Thread-safety: gRPC calls the factory and interceptors from any thread.
//
//   std::vector<std::unique_ptr<
//       grpc::experimental::ServerInterceptorFactoryInterface>> creators;
//   GrpcMetricsInterceptorFactory::Options options;
//   options.known_methods =
//   MethodNames(v1::CompanyStream::service_full_name());
//   creators.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(
//       &registry, Clock::Real(), options));
//   builder.experimental().SetInterceptorCreators(std::move(creators));
#pragma once

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/status.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "server/metrics.h"

namespace chstream::server {

// "OK", "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" for other numbers.
std::string_view GrpcCodeName(grpc::StatusCode code);

// The full method names of a service:
//   "/chstream.v1.CompanyStream/GetStatus", ...
std::vector<std::string> MethodNames(
    const google::protobuf::ServiceDescriptor& service);
// The same for a service linked into the binary, by its full name, e.g.
// v1::CompanyStream::service_full_name(); empty when it is unknown.
std::vector<std::string> MethodNames(const std::string& service_full_name);

class GrpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  struct Options {
    // When set, these full method names ("/pkg.Service/Method", see
    // MethodNames) get their own label and a zero duration series from the
    // start, and every other method (gRPC also intercepts calls to
    // unimplemented methods, whose names the client chooses) is "other".
    std::vector<std::string> known_methods;
    // Without known_methods: the first max_methods distinct names get their
    // own label, later ones are "other".
    size_t max_methods = 64;
    std::vector<std::string> quiet_methods = {"/grpc.health.v1.Health/Check"};
    std::vector<double> duration_buckets = DefaultDurationBuckets();
  };

  GrpcMetricsInterceptorFactory(MetricsRegistry* registry, Clock* clock)
      : GrpcMetricsInterceptorFactory(registry, clock, Options()) {}
  GrpcMetricsInterceptorFactory(MetricsRegistry* registry, Clock* clock,
                                Options options);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // Records one finished call (the interceptor's last step; public for
  // tests of the bookkeeping without a server).
  void Record(const std::string& method, const std::string& peer,
              grpc::StatusCode code, const std::string& message,
              absl::Duration duration);

  Clock* clock() const { return clock_; }

 private:
  struct MethodMetrics {
    Histogram* duration = nullptr;
    absl::flat_hash_map<int, Counter*> by_code;
  };
  // The label for `method` and its metrics.
  MethodMetrics& MethodLocked(const std::string& method, std::string* label)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MethodMetrics& AddMethodLocked(const std::string& label)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MetricsRegistry* const registry_;
  Clock* const clock_;
  const Options options_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, MethodMetrics> methods_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream::server
