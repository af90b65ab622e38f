// chstreamd: follows the Companies House Streaming API (or its built-in
// simulator), stores every event in SQLite and serves it over gRPC.
//
// Wiring (the only place ingest, storage and server meet):
//   Ingester --EventSink--> EventWriter --commit--> SubscriptionHub -> gRPC
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/log.h"
#include "ingest/ingester.h"
#include "ingest/simulator/simulator.h"
#include "ingest/writer_sink.h"
#include "server/alert_webhook.h"
#include "server/company_stream_service.h"
#include "server/config.h"
#include "server/executor.h"
#include "server/file_permissions.h"
#include "server/grpc_credentials.h"
#include "server/grpc_metrics_interceptor.h"
#include "server/grpc_server.h"
#include "server/health_monitor.h"
#include "server/http_listener.h"
#include "server/metrics.h"
#include "server/metrics_sources.h"
#include "server/subscription_hub.h"
#include "server/version.h"
#include "storage/event_writer.h"
#include "storage/store.h"

namespace chstream::server {
namespace {

std::string RandomKey() {
  std::random_device rd;
  return absl::StrCat("sim-", rd(), rd());
}

int Run(int argc, char** argv) {
  // Signals are taken synchronously by this thread (sigwait); block them
  // before any other thread starts so that none of them receives one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Debian's abseil is built without NDEBUG, so every Mutex acquisition
  // would feed the deadlock detector's lock graph (measured: ~4% of the
  // server's CPU when streaming). The test binaries keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  ConfigExit exit_request{-1, ""};
  absl::StatusOr<Config> loaded =
      LoadConfig(std::vector<std::string>(argv + 1, argv + argc),
                 ProcessEnvironment(), &exit_request);
  if (exit_request.code >= 0) {
    std::fputs(exit_request.output.c_str(), stdout);
    return exit_request.code;
  }
  if (!loaded.ok()) {
    std::fprintf(stderr, "chstreamd: %s\n",
                 log::Redact(std::string(loaded.status().message())).c_str());
    return 2;
  }
  Config config = *std::move(loaded);
  for (const std::string& warning : config.warnings) log::Warning(warning);
  for (const std::string& key : config.api_keys) log::AddSecret(key);
  log::Level level;
  if (log::ParseLevel(config.log_level, &level)) log::SetMinLevel(level);

  // gRPC security (server/grpc_credentials.h, server/file_permissions.h):
  // warn about secret files others can read; refuse a plaintext remote
  // listener; build TLS/mTLS/token credentials (bad files: exit 2).
  WarnAboutExposedSecretFiles(config);
  absl::Status exposure = CheckRemoteExposure(config);
  absl::StatusOr<GrpcSecurity> grpc_security =
      exposure.ok() ? BuildGrpcSecurity(config)
                    : absl::StatusOr<GrpcSecurity>(exposure);
  if (!grpc_security.ok()) {
    std::fprintf(
        stderr, "chstreamd: %s\n",
        log::Redact(std::string(grpc_security.status().message())).c_str());
    return 2;
  }
  log::Info("gRPC security", {{"tls", grpc_security->tls},
                              {"mutual_tls", grpc_security->mutual_tls},
                              {"bearer_tokens", grpc_security->tokens}});
  // End of gRPC security.
  Clock* clock = Clock::Real();
  const absl::Time started_at = clock->Now();

  // Storage.
  storage::Store::Options store_options;
  store_options.synchronous_full = config.sync_full;
  store_options.new_store_id = config.new_store_id;
  absl::StatusOr<std::unique_ptr<storage::Store>> opened =
      storage::Store::Open(config.db_path, store_options);
  if (!opened.ok()) {
    log::Error("cannot open the database", {{"error", opened.status()}});
    return 1;
  }
  std::unique_ptr<storage::Store> store = *std::move(opened);
  absl::StatusOr<std::vector<storage::StreamState>> states =
      store->LoadStreamStates();
  if (!states.ok()) {
    log::Error("cannot read stream state", {{"error", states.status()}});
    return 1;
  }

  // The simulator, when there is no key (or --simulate).
  std::unique_ptr<ingest::sim::Simulator> simulator;
  std::string upstream_url = config.upstream_url;
  std::vector<std::string> keys = config.api_keys;
  if (config.UseSimulator()) {
    ingest::sim::Options so;
    so.keys = {RandomKey()};
    so.seed = std::random_device{}();
    so.companies_rate = config.simulator_rate;
    // Continue after what is stored, so that a restart resumes without a
    // gap (the simulator's log starts afresh in every process).
    for (const storage::StreamState& st : *states) {
      if (st.last_timepoint) so.first_timepoints[st.stream] = *st.last_timepoint + 1;
    }
    absl::StatusOr<std::unique_ptr<ingest::sim::Simulator>> sim =
        ingest::sim::Simulator::Start(so);
    if (!sim.ok()) {
      log::Error("cannot start the simulator", {{"error", sim.status()}});
      return 1;
    }
    simulator = *std::move(sim);
    upstream_url = simulator->url();
    keys = so.keys;
    log::AddSecret(so.keys[0]);
    log::Info(config.api_keys.empty()
                  ? "no CH_STREAMING_API_KEY set: following the built-in "
                    "simulator of the Companies House stream"
                  : "--simulate: following the built-in simulator",
              {{"url", upstream_url},
               {"companies_events_per_second", config.simulator_rate}});
  }

  // Serving. The ingester is published to other threads (status, metrics,
  // the writer's commit callback) only once it has started.
  std::atomic<ingest::Ingester*> live_ingester{nullptr};
  auto stream_snapshots = [&live_ingester] {
    ingest::Ingester* ingester = live_ingester.load();
    return ingester != nullptr ? ingester->Snapshot()
                               : std::vector<ingest::StreamStatusSnapshot>{};
  };
  SubscriptionHub hub;
  Executor executor(2);
  ServiceOptions service_options;
  service_options.version = kVersion;
  service_options.upstream =
      config.UseSimulator() ? "simulator" : log::RedactUrl(config.upstream_url);
  service_options.started_at = started_at;
  service_options.max_subscribers = config.max_subscribers;
  service_options.subscriber_queue =
      static_cast<size_t>(config.subscriber_queue);
  service_options.max_subscriber_lag = config.max_subscriber_lag;
  CompanyStreamService service(store.get(), &hub, &executor, stream_snapshots,
                               clock, service_options);

  // The single writer: commits, then publishes to subscribers.
  storage::EventWriter::Options writer_options;
  writer_options.queue_capacity = static_cast<size_t>(config.writer_queue);
  writer_options.max_batch = static_cast<size_t>(config.batch_max_events);
  writer_options.max_delay = config.batch_max_delay;
  storage::EventWriter writer(
      store.get(), writer_options,
      [&](const storage::CommitResult& result) {
        hub.Publish(result.events);
        if (ingest::Ingester* ingester = live_ingester.load()) {
          ingester->OnCommitted(result);
        }
      },
      clock);
  writer.Start();

  // Metrics and the operations listener.
  MetricsRegistry metrics;
  RegisterProcessMetrics(metrics);
  MetricsSources sources;
  sources.version = kVersion;
  sources.streams = stream_snapshots;
  sources.writer = [&writer] { return writer.GetStats(); };
  sources.store = [&store] { return store->Stats(); };
  sources.subscribers = [&service] { return service.subscribers().Snapshot(); };
  sources.replay_pages = [&service] { return service.pages_read(); };
  RegisterChstreamMetrics(metrics, sources);
  // /readyz: ready once serving, while every stream is healthy.
  std::atomic<bool> ready{false};
  std::atomic<HealthMonitor*> live_monitor{nullptr};
  HttpListener::Options http_options;
  http_options.address = config.metrics_address;
  absl::StatusOr<std::unique_ptr<HttpListener>> http = HttpListener::Start(
      http_options, &metrics, [&ready, &live_monitor]() -> absl::Status {
        if (!ready.load()) {
          return absl::UnavailableError("starting or shutting down");
        }
        HealthMonitor* monitor = live_monitor.load();
        return monitor != nullptr ? monitor->Readiness() : absl::OkStatus();
      });
  if (!http.ok()) {
    log::Error("cannot start the metrics listener", {{"error", http.status()}});
    writer.Stop();
    return 1;
  }

  GrpcMetricsInterceptorFactory::Options interceptor_options;
  interceptor_options.known_methods = MethodNames(kServiceName);
  for (const char* name :
       {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}) {
    for (std::string& m : MethodNames(name)) {
      interceptor_options.known_methods.push_back(std::move(m));
    }
  }
  GrpcServer::Interceptors interceptors;
  interceptors.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(
      &metrics, clock, interceptor_options));
  absl::StatusOr<std::unique_ptr<GrpcServer>> grpc =
      GrpcServer::Start(config.grpc_address, &service, std::move(interceptors),
                        grpc_security->credentials);
  if (!grpc.ok()) {
    log::Error("cannot start the gRPC server", {{"error", grpc.status()}});
    (*http)->Stop();
    writer.Stop();
    return 1;
  }

  // Ingestion.
  ingest::IngesterOptions io;
  io.upstream_url = upstream_url;
  io.keys = keys;
  io.streams = config.streams;
  io.ca_file = config.ca_file;
  io.max_connections_per_key = config.max_connections_per_key;
  io.max_connects_per_minute = config.max_connects_per_minute;
  io.start_timepoints = config.start_timepoints;
  io.idle_timeout = config.idle_timeout;
  io.max_line_bytes = static_cast<size_t>(config.max_line_bytes);
  io.policy.auth_retry_interval = config.auth_retry_interval;
  io.policy.on_timepoint_expired =
      config.on_timepoint_expired == OnTimepointExpired::kStop
          ? ingest::TimepointExpiredAction::kStop
          : ingest::TimepointExpiredAction::kResumeFromHead;
  io.policy.breaker_failures = config.breaker_failures;
  ingest::WriterSink sink(&writer);
  ingest::Ingester ingester(io, &sink, clock);
  if (absl::Status s = ingester.Start(*states); !s.ok()) {
    log::Error("cannot start ingestion", {{"error", s}});
    (*grpc)->Shutdown(absl::Seconds(1));
    (*http)->Stop();
    writer.Stop();
    return 2;
  }
  live_ingester.store(&ingester);
  ready.store(true);

  // --- Health monitor (server/health_monitor.h): drives grpc.health
  // "ingest", GetStatus.health, alerts (log + optional webhook), metrics.
  std::unique_ptr<AlertWebhook> alert_webhook;
  if (!config.alert_webhook_url.empty()) {
    AlertWebhook::Options wo;
    wo.url = config.alert_webhook_url;
    wo.ca_file = config.ca_file;
    absl::StatusOr<std::unique_ptr<AlertWebhook>> started =
        AlertWebhook::Start(wo);
    if (started.ok()) {
      alert_webhook = *std::move(started);
    } else {
      log::Error("alert webhook disabled: alerts are only logged",
                 {{"error", started.status()}});
    }
  }
  HealthMonitor::Options health_options;
  health_options.streams = config.streams;
  health_options.thresholds.stall_after = config.stall_after;
  health_options.thresholds.busy_streams = config.busy_streams;
  health_options.thresholds.heartbeat_stale_after =
      config.heartbeat_stale_after;
  health_options.thresholds.disconnected_degraded_after =
      config.disconnected_after;
  health_options.thresholds.disconnected_failed_after =
      config.disconnected_failed_after;
  health_options.thresholds.max_lag = config.max_lag;
  health_options.thresholds.max_reconnects_per_hour =
      config.max_reconnects_per_hour;
  HealthMonitor health_monitor(
      health_options,
      {.snapshots = stream_snapshots,
       .clock = clock,
       .set_serving =
           [&grpc](bool serving) {
             (*grpc)->SetHealth(kIngestHealthService, serving);
           },
       .webhook = alert_webhook.get()});
  health_monitor.RegisterMetrics(metrics);
  service.SetHealthFiller(
      [&health_monitor](v1::HealthStatus* h) { health_monitor.FillHealth(h); });
  health_monitor.Start();
  live_monitor.store(&health_monitor);
  // --- End of health monitor block.

  const std::string grpc_host =
      config.grpc_address.substr(0, config.grpc_address.rfind(':'));
  const std::string http_host =
      config.metrics_address.substr(0, config.metrics_address.rfind(':'));
  log::Info("chstreamd serving",
            {{"version", kVersion},
             {"grpc_address", absl::StrCat(grpc_host, ":", (*grpc)->port())},
             {"metrics_address", absl::StrCat(http_host, ":", (*http)->port())},
             {"db_path", config.db_path},
             {"store_id", store->store_id()},
             {"streams", absl::StrJoin(config.streams, ",")},
             {"upstream", service_options.upstream}});

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log::Info("shutting down", {{"signal", signal_number}});

  // Health first, so load balancers stop sending; then stop reading the
  // upstream, commit what was read, and end the streams.
  ready.store(false);
  // --- Health monitor: stop evaluating before ingestion stops.
  live_monitor.store(nullptr);
  health_monitor.Stop();
  service.SetHealthFiller(nullptr);
  (*grpc)->SetHealth(kIngestHealthService, false);
  if (alert_webhook != nullptr) alert_webhook->Stop();
  // --- End of health monitor block.
  (*grpc)->SetHealth("", false);
  (*grpc)->SetHealth(kServiceName, false);
  ingester.Stop();
  live_ingester.store(nullptr);
  writer.Stop();
  (*grpc)->Shutdown(absl::Seconds(3));
  (*http)->Stop();
  if (simulator != nullptr) simulator->Stop();
  log::Info("stopped");
  return 0;
}

}  // namespace
}  // namespace chstream::server

int main(int argc, char** argv) { return chstream::server::Run(argc, argv); }
