// File: server/health_monitor.h
//
// Ingest health: turns the per-stream StreamStatusSnapshots and the state of
// storage commits into a health state per stream and for storage (healthy ->
// degraded -> failed) with the rules that make it so, and drives everything
// that reports it:
//   - grpc.health.v1 service "ingest": NOT_SERVING only while a configured
//     stream is failed or storage fails; degraded rules (lag while catching
//     up, a stall, ...) keep SERVING and raise alerts (through the
//     `set_serving` callback, normally GrpcServer::SetHealth("ingest", ...)).
//     /readyz does not follow it: it means "can serve reads" (Daemon);
//   - the `health` section of GetStatus (FillHealth);
//   - alerts: one structured log line per state transition of a stream or of
//     storage (warning when it becomes degraded, error when failed, info when
//     it recovers) and, when an AlertWebhook is given, the same as JSON;
//   - metrics: chstream_health_state{stream,state}, chstream_health_issue
//     {stream,rule,severity} and chstream_alerts_total{state}; storage shows
//     as stream="" (chstream_health_issue{rule="storage"}).
//
// The rules (EvaluateStream, a pure function of the snapshot, the time, the
// thresholds and the stream's history, so tests are exact):
//   auth_failed        AUTH_FAILED (401, bad key)                  failed
//   timepoint_expired  TIMEPOINT_EXPIRED and stopped (416, stop)   failed
//   stopped            STOPPED                                     failed
//   circuit_open       CIRCUIT_OPEN: degraded; failed once the stream has
//                      been disconnected for disconnected_failed_after
//   disconnected       CONNECTING/BACKING_OFF (or TIMEPOINT_EXPIRED while
//                      resuming from the head) for longer than
//                      disconnected_degraded_after: degraded; longer than
//                      disconnected_failed_after: failed
//   heartbeat_stale    STREAMING but no heartbeat nor event for
//                      heartbeat_stale_after                        degraded
//   stalled            STREAMING, a busy stream (busy_streams), heartbeats
//                      fresh, but no event for stall_after          degraded
//   lag                STREAMING and lag_seconds > max_lag          degraded
//   reconnects         more than max_reconnects_per_hour connection ends in
//                      the last hour (sliding window over successive
//                      snapshots' reconnects_total)                 degraded
// and for storage (EvaluateStorage; its issues have stream ""):
//   storage            the last commit attempt failed for a reason of the
//                      environment (full disk, I/O error, read-only file):
//                      the message carries the SQLite error         failed
//   leader             (a follower replica on PostgreSQL, Deps::cluster)
//                      no ingest leader heartbeat for 15 s          failed
// A stream's state is the worst severity of its issues; the overall state
// is the worst over the configured streams (a configured stream missing
// from the snapshots counts as CONNECTING since the monitor first looked).
// "Disconnected since" is measured from the first evaluation that saw the
// stream not STREAMING (or the monitor's first evaluation).
//
// Thread-safety: every public method is thread-safe. Tick() evaluates once
// (tests call it directly with a FakeClock); Start() runs it every
// tick_interval on a thread of its own until Stop(). Callbacks (snapshots,
// set_serving) are called without the monitor's lock held, from the thread
// calling Tick().
//
//   HealthMonitor::Options options;            // thresholds from Config
//   options.streams = config.streams;
//   HealthMonitor monitor(options, {.snapshots = ..., .clock = clock,
//                                   .set_serving = [&](bool s) {
//                                     grpc->SetHealth("ingest", s); }});
//   monitor.RegisterMetrics(registry);
//   monitor.Start();
//   ... service.SetHealthFiller([&](v1::HealthStatus* h) {
//         monitor.FillHealth(h); });
//   monitor.Stop();
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "chstream/v1/chstream.pb.h"
#include "ingest/stream_status.h"
#include "server/alert_webhook.h"
#include "server/metrics.h"
#include "storage/event_writer.h"

namespace chstream::server {

// The grpc.health.v1 service name that tracks ingestion.
inline constexpr char kIngestHealthService[] = "ingest";

enum class HealthState { kHealthy = 0, kDegraded = 1, kFailed = 2 };

// "healthy", "degraded", "failed".
std::string_view HealthStateName(HealthState state);

struct HealthThresholds {
  absl::Duration stall_after = absl::Minutes(15);
  absl::Duration heartbeat_stale_after = absl::Minutes(3);
  absl::Duration disconnected_degraded_after = absl::Minutes(2);
  absl::Duration disconnected_failed_after = absl::Minutes(15);
  absl::Duration max_lag = absl::Minutes(10);
  int max_reconnects_per_hour = 30;
  absl::Duration reconnect_window = absl::Hours(1);
  // Streams that normally carry events all the time (the stall rule).
  std::vector<std::string> busy_streams = {"companies", "filings", "officers",
                                           "persons-with-significant-control"};
};

// One failing rule of one stream.
struct HealthIssue {
  std::string stream;
  std::string rule;  // "stalled", "disconnected", ... (see the file comment)
  HealthState severity = HealthState::kDegraded;
  std::string message;                      // human text with the numbers
  absl::Time since = absl::InfinitePast();  // when the rule started failing
  double value = 0;      // the measured number (seconds, count)
  double threshold = 0;  // the limit it crossed (seconds, count; 0 if none)

  bool operator==(const HealthIssue&) const = default;
};

// What EvaluateStream carries from one evaluation of a stream to the next.
struct StreamHealthHistory {
  bool seen = false;
  absl::Time first_seen = absl::InfinitePast();
  // InfiniteFuture while STREAMING.
  absl::Time disconnected_since = absl::InfiniteFuture();
  // (time, reconnects_total) samples, oldest first, covering the window.
  std::deque<std::pair<absl::Time, uint64_t>> reconnect_samples;
  std::map<std::string, absl::Time> issue_since;  // rule -> since
};

// Evaluates every rule for one stream at `now`, updating `history`. Issues
// are ordered worst first (then by rule name).
std::vector<HealthIssue> EvaluateStream(const ingest::StreamStatusSnapshot& s,
                                        absl::Time now,
                                        const HealthThresholds& thresholds,
                                        StreamHealthHistory& history);

// The storage rule at `now`: one failed issue while `commits` fails.
std::vector<HealthIssue> EvaluateStorage(
    const storage::EventWriter::CommitHealth& commits, absl::Time now);

// The worst severity among `issues` (kHealthy when empty).
HealthState WorstState(const std::vector<HealthIssue>& issues);

// Everything one evaluation found.
struct HealthReport {
  absl::Time evaluated_at = absl::InfinitePast();
  HealthState overall = HealthState::kHealthy;
  std::map<std::string, HealthState> streams;  // configured streams
  HealthState storage = HealthState::kHealthy;
  std::vector<HealthIssue> issues;  // worst first, by stream
  uint64_t evaluations = 0;
};

// A state change of one stream (or of storage), as logged and POSTed.
struct HealthTransition {
  std::string stream;  // "" for storage
  HealthState from = HealthState::kHealthy;
  HealthState to = HealthState::kHealthy;
  absl::Time at = absl::InfinitePast();
  std::vector<HealthIssue>
      issues;  // the stream's issues now (empty: recovered)
};

// The alert's JSON body (also used for the webhook): {"service":"chstream",
// "time":..., "stream":..., "state":..., "previous":..., "rule":...,
// "message":..., "issues":[{"rule","severity","message","since","value",
// "threshold"}]}, passed through log::Redact.
std::string AlertJson(const HealthTransition& transition);

class HealthMonitor {
 public:
  struct Options {
    std::vector<std::string> streams;  // the configured streams
    HealthThresholds thresholds;
    absl::Duration tick_interval = absl::Seconds(1);
  };
  struct Deps {
    std::function<std::vector<ingest::StreamStatusSnapshot>()> snapshots;
    Clock* clock = nullptr;  // required
    // Called with the "ingest" serving status on the first evaluation and on
    // every change. May be empty.
    std::function<void(bool serving)> set_serving;
    AlertWebhook* webhook = nullptr;  // optional; must outlive the monitor
    // The writer's commit health (EventWriter::Health). May be empty.
    std::function<storage::EventWriter::CommitHealth()> storage;
    // Issues of the replica set (server/replica_roles.h: a follower whose
    // cluster has no live ingest leader), reported with storage's (stream
    // ""). May be empty.
    std::function<std::vector<HealthIssue>()> cluster;
  };

  HealthMonitor(Options options, Deps deps);
  ~HealthMonitor();  // Stop()s.
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Adds chstream_health_state, chstream_health_issue and
  // chstream_alerts_total (and the webhook's counters when there is one).
  // The monitor must outlive every later registry.Render().
  void RegisterMetrics(MetricsRegistry& registry);

  // Evaluates once now: updates the report, calls set_serving on a change,
  // logs (and POSTs) one alert per stream whose state changed. Returns the
  // new report.
  HealthReport Tick();

  // Runs Tick() at once and then every tick_interval until Stop().
  void Start();
  // Idempotent.
  void Stop();

  HealthReport Report() const;
  // Every transition so far, oldest first (at most the last 1000).
  std::vector<HealthTransition> Transitions() const;

  // The GetStatus health section from the last evaluation.
  void FillHealth(v1::HealthStatus* out) const;

  // Blocks until `predicate(report)` holds after some evaluation (or
  // already holds) or `timeout` (real time) passes; returns whether it held.
  bool WaitFor(const std::function<bool(const HealthReport&)>& predicate,
               absl::Duration timeout) const;

 private:
  void Alert(const HealthTransition& t);

  const Options options_;
  const Deps deps_;

  mutable absl::Mutex tick_mu_;  // serialises Tick()
  mutable absl::Mutex mu_;
  std::map<std::string, StreamHealthHistory> history_ ABSL_GUARDED_BY(tick_mu_);
  HealthReport report_ ABSL_GUARDED_BY(mu_);
  std::deque<HealthTransition> transitions_ ABSL_GUARDED_BY(mu_);
  int serving_ ABSL_GUARDED_BY(tick_mu_) = -1;  // -1 = never set
  // Set by RegisterMetrics; null until then.
  std::atomic<Counter*> alerts_degraded_{nullptr};
  std::atomic<Counter*> alerts_failed_{nullptr};
  std::atomic<Counter*> alerts_recovered_{nullptr};

  absl::Mutex thread_mu_;
  std::unique_ptr<absl::Notification> stop_ ABSL_GUARDED_BY(thread_mu_);
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace chstream::server
