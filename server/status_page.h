// File: server/status_page.h
//
// The status page of the operations listener (server/http_listener.h):
//
//   GET /              one self-contained HTML page (server/status_page.html,
//                      compiled in; no external resources) that refreshes
//                      itself every few seconds from the two below
//   GET /status.json   GetStatus's response in the proto3 JSON mapping
//                      (lowerCamelCase names, enums as names, 64-bit
//                      integers as strings, default values printed)
//   GET /history.json  {"intervalSeconds":5,"maxSamples":73,
//                       "streams":[{"stream":"companies",
//                                   "samples":[[unix_ms, events_total],...]}],
//                       "alerts":[AlertJson(...), ...]}  (newest alert first)
//
// IngestHistory samples every stream's events_total at a fixed interval, so
// the page can chart events per second over the last minutes as soon as it
// is opened, measured in server time.
//
// Thread-safety: IngestHistory's methods are thread-safe. The handlers run
// on the listener thread; the sources they call must be thread-safe.
//
//   IngestHistory history({}, stream_snapshots, clock);
//   history.Start();
//   HttpListener::Options http;
//   http.handlers = StatusPageHandlers(
//       {.status = [&](v1::GetStatusResponse* r) {
//          return service.FillStatus(r); },
//        .alerts = [&] { return monitor.Transitions(); },
//        .history = &history});
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "chstream/v1/chstream.pb.h"
#include "ingest/stream_status.h"
#include "server/health_monitor.h"
#include "server/http_listener.h"

namespace chstream::server {

// GetStatus's response as served on /status.json.
absl::StatusOr<std::string> StatusToJson(const v1::GetStatusResponse& status);

// The HTML of GET /.
const char* StatusPageHtml();

class IngestHistory {
 public:
  struct Options {
    absl::Duration interval = absl::Seconds(5);
    // 73 samples at 5 s: rates over the last 6 minutes.
    size_t max_samples = 73;
  };
  using SnapshotsFn =
      std::function<std::vector<ingest::StreamStatusSnapshot>()>;

  // `clock` must outlive the history.
  IngestHistory(Options options, SnapshotsFn snapshots, Clock* clock);
  ~IngestHistory();  // Stop()s.
  IngestHistory(const IngestHistory&) = delete;
  IngestHistory& operator=(const IngestHistory&) = delete;

  // Records every stream's events_total now (tests call it directly).
  void Sample();
  // Samples at once and then every interval on a thread until Stop().
  void Start();
  // Idempotent.
  void Stop();

  // The "intervalSeconds", "maxSamples" and "streams" members of
  // /history.json (without braces), streams in name order.
  std::string JsonMembers() const;

 private:
  const Options options_;
  const SnapshotsFn snapshots_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  // stream -> (time, events_total), oldest first, at most max_samples.
  std::map<std::string, std::deque<std::pair<absl::Time, uint64_t>>> samples_
      ABSL_GUARDED_BY(mu_);

  absl::Mutex thread_mu_;
  std::unique_ptr<absl::Notification> stop_ ABSL_GUARDED_BY(thread_mu_);
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

struct StatusPageSources {
  // Fills GetStatus's response (CompanyStreamService::FillStatus). Required.
  std::function<absl::Status(v1::GetStatusResponse*)> status = nullptr;
  // Health transitions so far, oldest first (HealthMonitor::Transitions).
  // May be empty (no alerts shown).
  std::function<std::vector<HealthTransition>()> alerts = nullptr;
  // May be null (no rate history). Must outlive the listener.
  const IngestHistory* history = nullptr;
  // The newest alerts /history.json lists.
  size_t max_alerts = 20;
};

// The handlers of "/", "/status.json" and "/history.json" for
// HttpListener::Options::handlers. A failing `status` answers 503 with the
// message.
std::map<std::string, HttpListener::Handler> StatusPageHandlers(
    StatusPageSources sources);

}  // namespace chstream::server
