#include "server/grpc_metrics_interceptor.h"

#include <grpcpp/server_context.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace chstream::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

// One per call. gRPC may run hook batches of the same call on different
// threads, so the state is locked.
class GrpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  GrpcMetricsInterceptor(GrpcMetricsInterceptorFactory* factory,
                         grpc::experimental::ServerRpcInfo* info)
      : factory_(factory),
        info_(info),
        method_(info->method() != nullptr ? info->method() : ""),
        start_(factory->clock()->Now()) {}

  // A call that never reported its close (not expected) is still recorded.
  // The server context may be gone by now: only saved state is used.
  ~GrpcMetricsInterceptor() override { Finish(); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      SavePeer();
    }
    if (m->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = m->GetSendStatus();
      SavePeer();
      absl::MutexLock lock(&mu_);
      if (!status_) status_ = std::move(status);
    }
    if (m->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_CLOSE)) {
      SavePeer();
      Finish();
    }
    m->Proceed();
  }

 private:
  void SavePeer() {
    {
      absl::MutexLock lock(&mu_);
      if (!peer_.empty()) return;
    }
    std::string peer = info_->server_context()->peer();
    absl::MutexLock lock(&mu_);
    if (peer_.empty()) peer_ = std::move(peer);
  }

  void Finish() {
    grpc::StatusCode code = grpc::StatusCode::CANCELLED;
    std::string message;
    std::string peer;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      if (status_) {
        code = status_->error_code();
        message = status_->error_message();
      }
      peer = peer_;
    }
    factory_->Record(method_, peer, code, message,
                     factory_->clock()->Now() - start_);
  }

  GrpcMetricsInterceptorFactory* const factory_;
  grpc::experimental::ServerRpcInfo* const info_;
  const std::string method_;
  const absl::Time start_;

  absl::Mutex mu_;
  std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
  std::string peer_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

std::string_view GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

std::vector<std::string> MethodNames(
    const google::protobuf::ServiceDescriptor& service) {
  std::vector<std::string> names;
  for (int i = 0; i < service.method_count(); ++i) {
    names.push_back(
        absl::StrCat("/", service.full_name(), "/", service.method(i)->name()));
  }
  return names;
}

std::vector<std::string> MethodNames(const std::string& service_full_name) {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          service_full_name);
  if (service == nullptr) return {};
  return MethodNames(*service);
}

GrpcMetricsInterceptorFactory::GrpcMetricsInterceptorFactory(
    MetricsRegistry* registry, Clock* clock, Options options)
    : registry_(registry), clock_(clock), options_(std::move(options)) {
  absl::MutexLock lock(&mu_);
  for (const std::string& method : options_.known_methods) {
    AddMethodLocked(method);
  }
}

grpc::experimental::Interceptor*
GrpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new GrpcMetricsInterceptor(this, info);
}

GrpcMetricsInterceptorFactory::MethodMetrics&
GrpcMetricsInterceptorFactory::AddMethodLocked(const std::string& label) {
  auto it = methods_.find(label);
  if (it != methods_.end()) return it->second;
  MethodMetrics& m = methods_[label];
  m.duration = &registry_->AddHistogram(
      "chstream_grpc_request_duration_seconds",
      "Duration of gRPC calls by method, from start to close, in seconds.",
      options_.duration_buckets, {{"method", label}});
  return m;
}

GrpcMetricsInterceptorFactory::MethodMetrics&
GrpcMetricsInterceptorFactory::MethodLocked(const std::string& method,
                                            std::string* label) {
  auto it = methods_.find(method);
  if (it != methods_.end()) {
    *label = method;
    return it->second;
  }
  const bool own_label =
      options_.known_methods.empty() && methods_.size() < options_.max_methods;
  *label = own_label ? method : "other";
  return AddMethodLocked(*label);
}

void GrpcMetricsInterceptorFactory::Record(const std::string& method,
                                           const std::string& peer,
                                           grpc::StatusCode code,
                                           const std::string& message,
                                           absl::Duration duration) {
  const std::string_view code_name = GrpcCodeName(code);
  {
    absl::MutexLock lock(&mu_);
    std::string label;
    MethodMetrics& m = MethodLocked(method, &label);
    Counter*& counter = m.by_code[static_cast<int>(code)];
    if (counter == nullptr) {
      counter = &registry_->AddCounter(
          "chstream_grpc_requests_total",
          "Finished gRPC calls by method and status code.",
          {{"method", label}, {"code", std::string(code_name)}});
    }
    counter->Increment();
    m.duration->ObserveDuration(duration);
  }

  log::Level level = log::Level::kInfo;
  if (code != grpc::StatusCode::OK && code != grpc::StatusCode::CANCELLED) {
    level = log::Level::kWarning;
  }
  if (level == log::Level::kInfo) {
    for (const std::string& quiet : options_.quiet_methods) {
      if (quiet == method) level = log::Level::kDebug;
    }
  }
  if (code == grpc::StatusCode::OK) {
    log::Write(level, "grpc call",
               {{"method", method},
                {"peer", peer},
                {"code", code_name},
                {"duration_seconds", absl::ToDoubleSeconds(duration)}});
  } else {
    log::Write(level, "grpc call",
               {{"method", method},
                {"peer", peer},
                {"code", code_name},
                {"duration_seconds", absl::ToDoubleSeconds(duration)},
                {"error", message}});
  }
}

}  // namespace chstream::server
