// File: server/daemon.h
//
// chstreamd as an object: owns every part of the server (store, simulator,
// subscription hub, executor, gRPC service, single writer, metrics, HTTP
// listener, gRPC server, ingester, health monitor), starts them in order and
// stops them in reverse, like Envoy's Server::InstanceImpl. main.cc only
// loads the Config, calls Daemon::Start, waits for a signal and calls Stop;
// tests run the whole daemon in-process on port 0.
//
// Start order: store -> hub, executor, service -> metrics, HTTP listener ->
// gRPC server -> ingestion -> health monitor. Ingestion is an
// IngestPipeline (server/ingest_pipeline.h: [simulator ->] ingester ->
// writer, and the retainer) for a SQLite store; with --postgres_url it is ReplicaRoles
// (server/replica_roles.h), which follows the leader and runs a pipeline
// only while this replica is the elected, fenced ingest leader.
// Stop order: readiness and health off -> ingestion (the writer stops
// accepting, so an ingest thread blocked on a full queue returns at once;
// the ingester stops; the writer commits what is queued, giving up a
// failing batch quickly; on PostgreSQL the leader lock is then released) ->
// gRPC server -> HTTP listener; then the parts are destroyed with the
// executor before the service it runs page reads for, and the store last.
//
// Each part's options come from a small function of the Config below, so
// that a setting is copied in exactly one place.
//
// Thread-safety: Start, Stop and the destructor from one thread; the
// accessors from any thread between Start and Stop.
//
//   int exit_code = 1;
//   absl::StatusOr<std::unique_ptr<Daemon>> daemon =
//       Daemon::Start(config, Clock::Real(), &exit_code);
//   if (!daemon.ok()) return exit_code;
//   ... (*daemon)->grpc_port() ...
//   (*daemon)->Stop();
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "server/alert_webhook.h"
#include "server/company_stream_service.h"
#include "server/config.h"
#include "server/executor.h"
#include "server/grpc_server.h"
#include "server/health_monitor.h"
#include "server/http_listener.h"
#include "server/ingest_pipeline.h"
#include "server/metrics.h"
#include "server/replica_roles.h"
#include "server/replica_state.h"
#include "server/status_page.h"
#include "server/subscription_hub.h"
#include "storage/event_writer.h"
#include "storage/store.h"

namespace chstream::server {

// Each part's options, derived from the Config (the ingest parts': see
// server/ingest_pipeline.h).
storage::Store::Options StoreOptionsFrom(const Config& config);
ServiceOptions ServiceOptionsFrom(const Config& config, absl::Time started_at);
HealthMonitor::Options HealthOptionsFrom(const Config& config);

class Daemon {
 public:
  // Starts every part. On failure, everything started is stopped again and
  // `*exit_code` (if not null) is set to what chstreamd exits with: 2 for a
  // setting that cannot work (security files, remote exposure, upstream
  // URL), 1 for a runtime failure (database, listeners). `clock` must
  // outlive the daemon.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(Config config,
                                                       Clock* clock,
                                                       int* exit_code);
  ~Daemon();  // Stop()
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Stops every part in reverse order and destroys them. Returns within
  // seconds in any state (a failing disk included). Idempotent.
  void Stop();

  // The bound ports (useful with port 0).
  int grpc_port() const;
  int http_port() const;

  const Config& config() const { return config_; }
  // Null once stopped.
  storage::EventStore* store() const { return store_.get(); }
  // The SQLite store, for its test hooks; null on PostgreSQL and once
  // stopped.
  storage::Store* sqlite_store() const {
    return dynamic_cast<storage::Store*>(store_.get());
  }
  // The running writer (standalone, or while leading on PostgreSQL), else
  // null.
  storage::EventWriter* writer() const;
  // Null with SQLite.
  ReplicaRoles* replica_roles() const { return live_roles_.load(); }
  HealthMonitor* health_monitor() const { return health_.get(); }
  CompanyStreamService* service() const { return service_.get(); }

 private:
  Daemon(Config config, Clock* clock);
  absl::Status StartParts(int* exit_code);
  // What GetStatus, the status page and health show: this replica's
  // ingester, or on a PostgreSQL follower the leader's recorded streams.
  std::vector<ingest::StreamStatusSnapshot> StreamSnapshots() const;
  // Only what this process ingests (metrics: a follower exports no stream
  // series, so that sums over replicas count each event once).
  std::vector<ingest::StreamStatusSnapshot> LocalStreamSnapshots() const;
  storage::EventWriter::Stats WriterStats() const;
  storage::EventWriter::CommitHealth CommitHealth() const;
  absl::Status Readiness() const;

  const Config config_;
  Clock* const clock_;
  bool started_ = false;  // every part started
  bool stopped_ = false;
  // GetStatus.replica and its metrics ("standalone" with SQLite).
  ReplicaState replica_;

  // In start order; Stop() ends and destroys them in reverse.
  std::unique_ptr<storage::EventStore> store_;
  std::unique_ptr<SubscriptionHub> hub_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<CompanyStreamService> service_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<IngestHistory> history_;
  std::unique_ptr<HttpListener> http_;
  std::unique_ptr<GrpcServer> grpc_;
  // Ingestion: with SQLite one pipeline for the process's life; with
  // PostgreSQL the roles, which run one while this replica leads.
  std::unique_ptr<IngestPipeline> pipeline_;
  std::unique_ptr<ReplicaRoles> roles_;
  std::unique_ptr<AlertWebhook> webhook_;
  std::unique_ptr<HealthMonitor> health_;

  // Published to other threads (status, metrics, health, /readyz) once
  // created; cleared just before they are destroyed.
  std::atomic<IngestPipeline*> live_pipeline_{nullptr};
  std::atomic<ReplicaRoles*> live_roles_{nullptr};
  // A writer's metrics before any commit (its histogram buckets), shown
  // before the pipeline starts.
  storage::EventWriter::Stats idle_writer_stats_;
  // /readyz: the store is open and gRPC serves.
  std::atomic<bool> ready_{false};
  // The status page's alert list, while the health monitor runs.
  std::atomic<HealthMonitor*> live_monitor_{nullptr};
};

}  // namespace chstream::server
