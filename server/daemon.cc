#include "server/daemon.h"

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
    // Every replica may ingest later (when elected): a setting that would
    // stop its ingestion then stops it now, follower or not.
    if (absl::Status s = IngestPipeline::CheckSettings(config); !s.ok()) {
      *exit_code = 2;
      return s;
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
  // Serving.
  auto snapshots = [this] { return StreamSnapshots(); };
  hub_ = std::make_unique<SubscriptionHub>();
  executor_ = std::make_unique<Executor>(2);
  ServiceOptions service_options = ServiceOptionsFrom(config, started_at);
  service_options.replica = [this](v1::ReplicaStatus* r) { replica_.Fill(r); };
  service_ = std::make_unique<CompanyStreamService>(
      store_.get(), hub_.get(), executor_.get(), snapshots, clock_,
      std::move(service_options));

  {
    // A writer's metrics before its first commit, for the scrapes that come
    // before ingestion starts (and on followers).
    storage::EventWriter idle(store_.get(), {}, nullptr, clock_);
    idle_writer_stats_ = idle.GetStats();
  }

  // Metrics and the operations listener.
  metrics_ = std::make_unique<MetricsRegistry>();
  RegisterProcessMetrics(*metrics_);
  MetricsSources sources;
  sources.version = kVersion;
  sources.streams = [this] { return LocalStreamSnapshots(); };
  sources.writer = [this] { return WriterStats(); };
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

  // Ingestion: PostgreSQL replicas take roles (one fenced leader ingests),
  // a SQLite store has its pipeline.
  if (auto* postgres = dynamic_cast<storage::PostgresStore*>(store_.get())) {
    ReplicaRoles::Options ro;
    ro.url = config.postgres_url;
    ro.replica_id = replica_.id();
    roles_ = std::make_unique<ReplicaRoles>(
        ro, postgres, hub_.get(), &replica_,
        [this](const std::vector<storage::StreamState>& states) {
          return IngestPipeline::Start(config_, store_.get(), hub_.get(),
                                       states, clock_, nullptr);
        },
        clock_);
    live_roles_.store(roles_.get());
    roles_->Start();
  } else {
    absl::StatusOr<std::vector<storage::StreamState>> states =
        store_->LoadStreamStates();
    if (!states.ok()) {
      return absl::Status(states.status().code(),
                          absl::StrCat("cannot read stream state: ",
                                       states.status().message()));
    }
    absl::StatusOr<std::unique_ptr<IngestPipeline>> pipeline =
        IngestPipeline::Start(config, store_.get(), hub_.get(), *states, clock_,
                              exit_code);
    if (!pipeline.ok()) return pipeline.status();
    pipeline_ = *std::move(pipeline);
    live_pipeline_.store(pipeline_.get());
  }
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
      HealthMonitor::Deps{
          .snapshots = snapshots,
          .clock = clock_,
          .set_serving =
              [this](bool serving) {
                grpc_->SetHealth(kIngestHealthService, serving);
              },
          .webhook = webhook_.get(),
          .storage = [this] { return CommitHealth(); },
          .cluster = live_roles_.load() == nullptr
                         ? std::function<std::vector<HealthIssue>()>()
                         : [this] { return roles_->ClusterIssues(); }});
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
  // Stop reading the upstream, then commit what was read (see
  // IngestPipeline::Stop); a PostgreSQL leader then releases the lock.
  if (pipeline_ != nullptr) pipeline_->Stop();
  if (roles_ != nullptr) roles_->Stop();
  // End the calls, then the listeners.
  if (grpc_ != nullptr) grpc_->Shutdown(absl::Seconds(3));
  if (http_ != nullptr) http_->Stop();

  // Destroy in reverse order of construction.
  health_.reset();
  webhook_.reset();
  grpc_.reset();
  http_.reset();
  history_.reset();
  metrics_.reset();
  live_roles_.store(nullptr);
  roles_.reset();
  live_pipeline_.store(nullptr);
  pipeline_.reset();
  // The executor before the service: its queued page reads use the service
  // (and the store); destroying it runs them to the end first.
  executor_.reset();
  service_.reset();
  hub_.reset();
  store_.reset();
  if (started_) log::Info("stopped");
}

int Daemon::grpc_port() const { return grpc_ != nullptr ? grpc_->port() : 0; }

int Daemon::http_port() const { return http_ != nullptr ? http_->port() : 0; }

storage::EventWriter* Daemon::writer() const {
  if (ReplicaRoles* roles = live_roles_.load()) {
    std::shared_ptr<IngestPipeline> p = roles->pipeline();
    return p != nullptr ? p->writer() : nullptr;
  }
  IngestPipeline* p = live_pipeline_.load();
  return p != nullptr ? p->writer() : nullptr;
}

std::vector<ingest::StreamStatusSnapshot> Daemon::StreamSnapshots() const {
  if (ReplicaRoles* roles = live_roles_.load()) return roles->StreamSnapshots();
  return LocalStreamSnapshots();
}

std::vector<ingest::StreamStatusSnapshot> Daemon::LocalStreamSnapshots() const {
  if (ReplicaRoles* roles = live_roles_.load()) {
    std::shared_ptr<IngestPipeline> p = roles->pipeline();
    return p != nullptr ? p->Snapshots()
                        : std::vector<ingest::StreamStatusSnapshot>{};
  }
  IngestPipeline* p = live_pipeline_.load();
  return p != nullptr ? p->Snapshots()
                      : std::vector<ingest::StreamStatusSnapshot>{};
}

storage::EventWriter::Stats Daemon::WriterStats() const {
  if (ReplicaRoles* roles = live_roles_.load()) return roles->WriterStats();
  IngestPipeline* p = live_pipeline_.load();
  return p != nullptr ? p->WriterStats() : idle_writer_stats_;
}

storage::EventWriter::CommitHealth Daemon::CommitHealth() const {
  if (ReplicaRoles* roles = live_roles_.load()) return roles->CommitHealth();
  IngestPipeline* p = live_pipeline_.load();
  return p != nullptr ? p->CommitHealth()
                      : storage::EventWriter::CommitHealth{};
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
