// File: server/ingest_pipeline.h
//
// The parts of chstreamd that ingest, as one unit that starts and stops
// together: [the embedded simulator] -> ingester -> WriterSink -> the single
// EventWriter -> store, whose commit callback publishes to the
// SubscriptionHub and tells the ingester what was committed.
//
// A standalone (SQLite) chstreamd runs one pipeline for its whole life. On
// PostgreSQL a replica runs one per leadership term (server/replica_roles.h):
// started when it is elected, from the stream states stored at that moment
// (so each stream resumes from the stored timepoint + 1; the simulator, when
// used, starts its log there too), and stopped when it loses leadership.
//
// Start order: simulator -> writer -> retainer -> ingester.
// Stop order: retainer -> the writer stops accepting (an ingest thread blocked
// on a full queue returns at once) -> ingester -> writer (commits what is
// queued, or gives it up after a few quick attempts if storage refuses it, e.g.
// a fenced former leader) -> simulator.
//
// Thread-safety: Start/Stop from one thread; the accessors from any thread
// while the pipeline exists (also after Stop).
//
//   CHS_ASSIGN_OR_RETURN(std::unique_ptr<IngestPipeline> p,
//       IngestPipeline::Start(config, store, hub, states, clock, &code));
//   ... p->Snapshots() ...
//   p->Stop();
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "ingest/ingester.h"
#include "ingest/simulator/simulator.h"
#include "ingest/stream_status.h"
#include "ingest/writer_sink.h"
#include "server/config.h"
#include "server/subscription_hub.h"
#include "storage/event_writer.h"
#include "storage/retainer.h"
#include "storage/store.h"

namespace chstream::server {

// Each ingest part's options, derived from the Config (so that a setting is
// copied in exactly one place).
storage::EventWriter::Options WriterOptionsFrom(const Config& config);
storage::RetentionPolicy RetentionPolicyFrom(const Config& config);
// `upstream_url` and `keys`: the configured ones, or the simulator's.
ingest::IngesterOptions IngesterOptionsFrom(const Config& config,
                                            std::string upstream_url,
                                            std::vector<std::string> keys);
// The embedded simulator continues after what `states` says is stored, so
// that a restart (or a new leader) resumes without a gap.
ingest::sim::Options SimulatorOptionsFrom(
    const Config& config, const std::vector<storage::StreamState>& states);

class IngestPipeline {
 public:
  // Starts the simulator (config.UseSimulator()), the writer and the
  // ingester, resuming each stream after what `states` says is stored. On
  // failure everything started is stopped and `*exit_code` (if not null)
  // says what chstreamd exits with (2: a setting, 1: the environment).
  // `store`, `hub` and `clock` must outlive the pipeline.
  static absl::StatusOr<std::unique_ptr<IngestPipeline>> Start(
      const Config& config, storage::EventStore* store, SubscriptionHub* hub,
      const std::vector<storage::StreamState>& states, Clock* clock,
      int* exit_code);
  // The settings Start() refuses with exit code 2 (the upstream URL, keys,
  // streams, --ca_file), checked without starting anything and with the
  // same error: a PostgreSQL replica calls it at start-up, so that a bad
  // setting stops every replica at once instead of each one only when it is
  // elected. OK when following the simulator.
  static absl::Status CheckSettings(const Config& config);
  ~IngestPipeline();  // Stop()
  IngestPipeline(const IngestPipeline&) = delete;
  IngestPipeline& operator=(const IngestPipeline&) = delete;

  // Idempotent; returns within seconds even when every commit fails.
  void Stop();

  // The streams' state (empty once stopped).
  std::vector<ingest::StreamStatusSnapshot> Snapshots() const;
  storage::EventWriter::Stats WriterStats() const {
    return writer_->GetStats();
  }
  storage::EventWriter::CommitHealth CommitHealth() const {
    return writer_->Health();
  }
  storage::EventWriter* writer() const { return writer_.get(); }

 private:
  IngestPipeline() = default;

  std::unique_ptr<ingest::sim::Simulator> simulator_;
  std::unique_ptr<storage::EventWriter> writer_;
  // Retention (--retain_*), run by the process that has the writer (on
  // PostgreSQL the ingest leader): its own thread and connection; commits
  // take turns with its small transactions (storage/retainer.h).
  std::unique_ptr<storage::Retainer> retainer_;
  std::unique_ptr<ingest::WriterSink> sink_;
  std::unique_ptr<ingest::Ingester> ingester_;
  // Published to the commit callback and Snapshots() while it runs.
  std::atomic<ingest::Ingester*> live_ingester_{nullptr};
  bool stopped_ = false;
};

}  // namespace chstream::server
