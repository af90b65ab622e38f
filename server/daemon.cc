#include "server/daemon.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "server/file_permissions.h"
#include "server/grpc_credentials.h"
#include "server/grpc_metrics_interceptor.h"
#include "server/metrics_sources.h"
#include "server/version.h"
#include "storage/postgres/postgres_store.h"

namespace chstream::server {
namespace {

std::string RandomKey() {
  std::random_device rd;
  return absl::StrCat("sim-", rd(), rd());
}

std::string Host(const std::string& address) {
  return address.substr(0, address.rfind(':'));
}

}  // namespace

storage::Store::Options StoreOptionsFrom(const Config& config) {
  storage::Store::Options o;
  o.synchronous_full = config.sync_full;
  o.new_store_id = config.new_store_id;
  return o;
}

storage::RetentionPolicy RetentionPolicyFrom(const Config& config) {
  storage::RetentionPolicy p;
  p.events_for = config.retain_for;
  p.max_bytes = config.retain_bytes;
  p.dead_letters_for = config.retain_dead_letters_for;
  return p;
}

storage::EventWriter::Options WriterOptionsFrom(const Config& config) {
  storage::EventWriter::Options o;
  o.queue_capacity = static_cast<size_t>(config.writer_queue);
  o.queue_bytes = static_cast<size_t>(config.writer_queue_bytes);
  o.max_batch = static_cast<size_t>(config.batch_max_events);
  o.max_delay = config.batch_max_delay;
  return o;
}

ServiceOptions ServiceOptionsFrom(const Config& config, absl::Time started_at) {
  ServiceOptions o;
  o.version = kVersion;
  o.upstream =
      config.UseSimulator() ? "simulator" : log::RedactUrl(config.upstream_url);
  o.started_at = started_at;
  o.max_subscribers = config.max_subscribers;
  o.subscriber_queue = static_cast<size_t>(config.subscriber_queue);
  o.max_subscriber_lag = config.max_subscriber_lag;
  o.subscriber_write_timeout = config.subscriber_write_timeout;
  o.max_replays = config.max_replays;
  return o;
}

ingest::IngesterOptions IngesterOptionsFrom(const Config& config,
                                            std::string upstream_url,
                                            std::vector<std::string> keys) {
  ingest::IngesterOptions o;
  o.upstream_url = std::move(upstream_url);
  o.keys = std::move(keys);
  o.streams = config.streams;
  o.ca_file = config.ca_file;
  o.max_connections_per_key = config.max_connections_per_key;
  o.max_connects_per_minute = config.max_connects_per_minute;
  o.start_timepoints = config.start_timepoints;
  o.idle_timeout = config.idle_timeout;
  o.max_line_bytes = static_cast<size_t>(config.max_line_bytes);
  o.policy.auth_retry_interval = config.auth_retry_interval;
  o.policy.on_timepoint_expired =
      config.on_timepoint_expired == OnTimepointExpired::kStop
          ? ingest::TimepointExpiredAction::kStop
          : ingest::TimepointExpiredAction::kResumeFromHead;
  o.policy.breaker_failures = config.breaker_failures;
  return o;
}

HealthMonitor::Options HealthOptionsFrom(const Config& config) {
  HealthMonitor::Options o;
  o.streams = config.streams;
  HealthThresholds& t = o.thresholds;
  t.stall_after = config.stall_after;
  t.busy_streams = config.busy_streams;
  t.heartbeat_stale_after = config.heartbeat_stale_after;
  t.disconnected_degraded_after = config.disconnected_after;
  t.disconnected_failed_after = config.disconnected_failed_after;
  t.max_lag = config.max_lag;
  t.max_reconnects_per_hour = config.max_reconnects_per_hour;
  return o;
}

ingest::sim::Options SimulatorOptionsFrom(
    const Config& config, const std::vector<storage::StreamState>& states) {
  ingest::sim::Options o;
  o.keys = {RandomKey()};
  o.seed = std::random_device{}();
  o.companies_rate = config.simulator_rate;
  // The simulator's log starts afresh in every process.
  for (const storage::StreamState& st : states) {
    if (st.last_timepoint)
      o.first_timepoints[st.stream] = *st.last_timepoint + 1;
  }
  return o;
}

Daemon::Daemon(Config config, Clock* clock)
    : config_(std::move(config)), clock_(clock) {}

Daemon::~Daemon() { Stop(); }

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(Config config,
                                                      Clock* clock,
                                                      int* exit_code) {
  std::unique_ptr<Daemon> daemon(new Daemon(std::move(config), clock));
  int code = 1;
  if (absl::Status s = daemon->StartParts(&code); !s.ok()) {
    daemon->Stop();
    if (exit_code != nullptr) *exit_code = code;
    return s;
  }
  return daemon;
}

absl::Status Daemon::StartParts(int* exit_code) {
  const Config& config = config_;
  // gRPC security (server/grpc_credentials.h, server/file_permissions.h):
  // warn about secret files others can read; refuse a plaintext remote
  // listener; build TLS/mTLS/token credentials (bad files: exit 2).
  *exit_code = 2;
  WarnAboutExposedSecretFiles(config);
  CHS_RETURN_IF_ERROR(CheckRemoteExposure(config));
  absl::StatusOr<GrpcSecurity> security = BuildGrpcSecurity(config);
  if (!security.ok()) return security.status();
  log::Info("gRPC security", {{"tls", security->tls},
                              {"mutual_tls", security->mutual_tls},
                              {"bearer_tokens", security->tokens}});
  *exit_code = 1;
  const absl::Time started_at = clock_->Now();

  // Storage: PostgreSQL with --postgres_url, else the SQLite file.
  if (!config.postgres_url.empty()) {
    if (config.new_store_id) {
      *exit_code = 2;
      return absl::InvalidArgumentError(
          "--new_store_id is for SQLite files; a PostgreSQL store keeps the "
          "store_id in its cluster row");
    }
    absl::StatusOr<std::unique_ptr<storage::PostgresStore>> opened =
        storage::PostgresStore::Open(config.postgres_url);
    if (!opened.ok()) {
      // A URL, password or server that does not work is a setting to fix.
      *exit_code = 2;
      return absl::Status(opened.status().code(),
                          absl::StrCat("cannot open the PostgreSQL store: ",
                                       opened.status().message()));
    }
    store_ = *std::move(opened);
  } else {
    absl::StatusOr<std::unique_ptr<storage::Store>> opened =
        storage::Store::Open(config.db_path, StoreOptionsFrom(config));
    if (!opened.ok()) {
      return absl::Status(opened.status().code(),
                          absl::StrCat("cannot open the database: ",
                                       opened.status().message()));
    }
    store_ = *std::move(opened);
  }
  absl::StatusOr<std::vector<storage::StreamState>> states =
      store_->LoadStreamStates();
  if (!states.ok()) {
    return absl::Status(
        states.status().code(),
        absl::StrCat("cannot read stream state: ", states.status().message()));
  }

  // The simulator, when there is no key (or --simulate).
  std::string upstream_url = config.upstream_url;
  std::vector<std::string> keys = config.api_keys;
  if (config.UseSimulator()) {
    ingest::sim::Options so = SimulatorOptionsFrom(config, *states);
    absl::StatusOr<std::unique_ptr<ingest::sim::Simulator>> sim =
        ingest::sim::Simulator::Start(so);
    if (!sim.ok()) {
      return absl::Status(
          sim.status().code(),
          absl::StrCat("cannot start the simulator: ", sim.status().message()));
    }
    simulator_ = *std::move(sim);
    upstream_url = simulator_->url();
    keys = so.keys;
    log::AddSecret(so.keys[0]);
    log::Info(config.api_keys.empty()
                  ? "no CH_STREAMING_API_KEY set: following the built-in "
                    "simulator of the Companies House stream"
                  : "--simulate: following the built-in simulator",
              {{"url", upstream_url},
               {"companies_events_per_second", config.simulator_rate}});
  }

  // Serving.
  auto snapshots = [this] { return StreamSnapshots(); };
  hub_ = std::make_unique<SubscriptionHub>();
  executor_ = std::make_unique<Executor>(2);
  ServiceOptions service_options = ServiceOptionsFrom(config, started_at);
  service_options.replica = [this](v1::ReplicaStatus* r) { replica_.Fill(r); };
  service_ = std::make_unique<CompanyStreamService>(
      store_.get(), hub_.get(), executor_.get(), snapshots, clock_,
      std::move(service_options));

  // The single writer: commits, then publishes to subscribers.
  writer_ = std::make_unique<storage::EventWriter>(
      store_.get(), WriterOptionsFrom(config),
      [this](const storage::CommitResult& result) {
        hub_->Publish(result.events);
        if (ingest::Ingester* ingester = live_ingester_.load()) {
          ingester->OnCommitted(result);
        }
      },
      clock_);
  writer_->Start();

  // Retention: its own thread and connection; commits take turns with its
  // small transactions (storage/retainer.h). Run by the process that has
  // the writer (the ingest leader).
  retainer_ = std::make_unique<storage::Retainer>(
      store_.get(),
      storage::Retainer::Options{.policy = RetentionPolicyFrom(config)},
      clock_);
  retainer_->Start();

  // Metrics and the operations listener.
  metrics_ = std::make_unique<MetricsRegistry>();
  RegisterProcessMetrics(*metrics_);
  MetricsSources sources;
  sources.version = kVersion;
  sources.streams = snapshots;
  sources.writer = [this] { return writer_->GetStats(); };
  sources.store = [this] { return store_->Stats(); };
  sources.subscribers = [this] { return service_->subscribers().Snapshot(); };
  sources.replay_pages = [this] { return service_->pages_read(); };
  RegisterChstreamMetrics(*metrics_, sources);
  replica_.RegisterMetrics(*metrics_);
  HttpListener::Options http_options;
  http_options.address = config.metrics_address;
  // The status page (server/status_page.h): GET /, /status.json,
  // /history.json.
  history_ = std::make_unique<IngestHistory>(IngestHistory::Options{},
                                             snapshots, clock_);
  StatusPageSources page_sources;
  page_sources.status = [this](v1::GetStatusResponse* r) {
    return service_->FillStatus(r);
  };
  page_sources.alerts = [this] {
    HealthMonitor* monitor = live_monitor_.load();
    return monitor != nullptr ? monitor->Transitions()
                              : std::vector<HealthTransition>{};
  };
  page_sources.history = history_.get();
  http_options.handlers = StatusPageHandlers(std::move(page_sources));
  absl::StatusOr<std::unique_ptr<HttpListener>> http = HttpListener::Start(
      http_options, metrics_.get(), [this] { return Readiness(); });
  if (!http.ok()) {
    return absl::Status(http.status().code(),
                        absl::StrCat("cannot start the metrics listener: ",
                                     http.status().message()));
  }
  http_ = *std::move(http);

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
      metrics_.get(), clock_, interceptor_options));
  absl::StatusOr<std::unique_ptr<GrpcServer>> grpc =
      GrpcServer::Start(config.grpc_address, service_.get(),
                        std::move(interceptors), security->credentials);
  if (!grpc.ok()) {
    return absl::Status(grpc.status().code(),
                        absl::StrCat("cannot start the gRPC server: ",
                                     grpc.status().message()));
  }
  grpc_ = *std::move(grpc);
  replica_.SetId(config.replica_id.empty() ? DefaultReplicaId(grpc_->port())
                                           : config.replica_id);

  // Ingestion.
  sink_ = std::make_unique<ingest::WriterSink>(writer_.get());
  ingester_ = std::make_unique<ingest::Ingester>(
      IngesterOptionsFrom(config, upstream_url, keys), sink_.get(), clock_);
  if (absl::Status s = ingester_->Start(*states); !s.ok()) {
    *exit_code = 2;
    return absl::Status(s.code(),
                        absl::StrCat("cannot start ingestion: ", s.message()));
  }
  live_ingester_.store(ingester_.get());
  ready_.store(true);
  history_->Start();

  // Health monitor (server/health_monitor.h): drives grpc.health "ingest",
  // GetStatus.health, alerts (log + optional webhook), metrics.
  if (!config.alert_webhook_url.empty()) {
    AlertWebhook::Options wo;
    wo.url = config.alert_webhook_url;
    wo.ca_file = config.ca_file;
    absl::StatusOr<std::unique_ptr<AlertWebhook>> started =
        AlertWebhook::Start(wo);
    if (started.ok()) {
      webhook_ = *std::move(started);
    } else {
      log::Error("alert webhook disabled: alerts are only logged",
                 {{"error", started.status()}});
    }
  }
  health_ = std::make_unique<HealthMonitor>(
      HealthOptionsFrom(config),
      HealthMonitor::Deps{.snapshots = snapshots,
                          .clock = clock_,
                          .set_serving =
                              [this](bool serving) {
                                grpc_->SetHealth(kIngestHealthService, serving);
                              },
                          .webhook = webhook_.get(),
                          .storage = [this] { return writer_->Health(); }});
  health_->RegisterMetrics(*metrics_);
  service_->SetHealthFiller(
      [this](v1::HealthStatus* h) { health_->FillHealth(h); });
  health_->Start();
  live_monitor_.store(health_.get());

  log::Info("chstreamd serving",
            {{"version", kVersion},
             {"grpc_address",
              absl::StrCat(Host(config.grpc_address), ":", grpc_->port())},
             {"metrics_address",
              absl::StrCat(Host(config.metrics_address), ":", http_->port())},
             {"db_path", store_->location()},
             {"store_id", store_->store_id()},
             {"replica_id", replica_.id()},
             {"streams", absl::StrJoin(config.streams, ",")},
             {"upstream", config.UseSimulator()
                              ? std::string("simulator")
                              : log::RedactUrl(config.upstream_url)}});
  started_ = true;
  return absl::OkStatus();
}

void Daemon::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // Health first, so load balancers stop sending.
  ready_.store(false);
  live_monitor_.store(nullptr);
  if (health_ != nullptr) health_->Stop();
  if (service_ != nullptr) service_->SetHealthFiller(nullptr);
  if (grpc_ != nullptr) grpc_->SetHealth(kIngestHealthService, false);
  if (webhook_ != nullptr) webhook_->Stop();
  if (history_ != nullptr) history_->Stop();
  if (grpc_ != nullptr) {
    grpc_->SetHealth("", false);
    grpc_->SetHealth(kServiceName, false);
  }
  // Stop reading the upstream, then commit what was read. The writer stops
  // accepting first: an ingest thread blocked on a full queue (storage
  // failing) returns at once, so the ingester can be joined. What it read
  // and could not queue was not committed: the upstream sends it again
  // after a restart.
  if (writer_ != nullptr) writer_->StopAccepting();
  if (ingester_ != nullptr) ingester_->Stop();
  live_ingester_.store(nullptr);
  if (writer_ != nullptr) writer_->Stop();
  if (retainer_ != nullptr) retainer_->Stop();
  // End the calls, then the listeners.
  if (grpc_ != nullptr) grpc_->Shutdown(absl::Seconds(3));
  if (http_ != nullptr) http_->Stop();
  if (simulator_ != nullptr) simulator_->Stop();

  // Destroy in reverse order of construction.
  health_.reset();
  webhook_.reset();
  ingester_.reset();
  sink_.reset();
  grpc_.reset();
  http_.reset();
  history_.reset();
  metrics_.reset();
  retainer_.reset();
  writer_.reset();
  // The executor before the service: its queued page reads use the service
  // (and the store); destroying it runs them to the end first.
  executor_.reset();
  service_.reset();
  hub_.reset();
  simulator_.reset();
  store_.reset();
  if (started_) log::Info("stopped");
}

int Daemon::grpc_port() const { return grpc_ != nullptr ? grpc_->port() : 0; }

int Daemon::http_port() const { return http_ != nullptr ? http_->port() : 0; }

std::vector<ingest::StreamStatusSnapshot> Daemon::StreamSnapshots() const {
  ingest::Ingester* ingester = live_ingester_.load();
  return ingester != nullptr ? ingester->Snapshot()
                             : std::vector<ingest::StreamStatusSnapshot>{};
}

absl::Status Daemon::Readiness() const {
  // "Can serve reads": the store is open and gRPC is up. Independent of the
  // upstream and of ingest health (grpc.health "ingest" and GetStatus carry
  // that), so that a replica is not taken out of service because Companies
  // House is down or a backlog is being caught up.
  if (!ready_.load())
    return absl::UnavailableError("starting or shutting down");
  return absl::OkStatus();
}

}  // namespace chstream::server
