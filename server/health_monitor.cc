#include "server/health_monitor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/json.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "server/proto_convert.h"

namespace chstream::server {
namespace {

using ingest::StreamState;

constexpr size_t kMaxTransitions = 1000;

std::string Dur(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Milliseconds(1)));
}

double Secs(absl::Duration d) { return absl::ToDoubleSeconds(d); }

std::string LastError(const ingest::StreamStatusSnapshot& s) {
  std::string out;
  if (s.last_http_status != 0) {
    absl::StrAppend(&out, "last HTTP status ", s.last_http_status);
  }
  if (!s.last_error.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : ", ",
                    "last error: ", s.last_error);
  }
  return out.empty() ? std::string() : absl::StrCat(" (", out, ")");
}

bool IsBusy(const HealthThresholds& t, const std::string& stream) {
  return std::find(t.busy_streams.begin(), t.busy_streams.end(), stream) !=
         t.busy_streams.end();
}

}  // namespace

std::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kDegraded:
      return "degraded";
    case HealthState::kFailed:
      return "failed";
  }
  return "unknown";
}

HealthState WorstState(const std::vector<HealthIssue>& issues) {
  HealthState worst = HealthState::kHealthy;
  for (const HealthIssue& i : issues) worst = std::max(worst, i.severity);
  return worst;
}

std::vector<HealthIssue> EvaluateStream(const ingest::StreamStatusSnapshot& s,
                                        absl::Time now,
                                        const HealthThresholds& t,
                                        StreamHealthHistory& h) {
  if (!h.seen) {
    h.seen = true;
    h.first_seen = now;
  }
  const bool streaming = s.state == StreamState::kStreaming;
  if (streaming) {
    h.disconnected_since = absl::InfiniteFuture();
  } else if (h.disconnected_since == absl::InfiniteFuture()) {
    h.disconnected_since = now;
  }
  const absl::Duration down =
      streaming ? absl::ZeroDuration() : now - h.disconnected_since;

  std::vector<HealthIssue> issues;
  auto add = [&](std::string rule, HealthState severity, std::string message,
                 double value, double threshold) {
    HealthIssue issue;
    issue.stream = s.stream;
    issue.rule = std::move(rule);
    issue.severity = severity;
    issue.message = std::move(message);
    issue.value = value;
    issue.threshold = threshold;
    issues.push_back(std::move(issue));
  };
  auto disconnected = [&](std::string_view what) {
    const HealthState severity =
        down >= t.disconnected_failed_after     ? HealthState::kFailed
        : down >= t.disconnected_degraded_after ? HealthState::kDegraded
                                                : HealthState::kHealthy;
    if (severity == HealthState::kHealthy) return;
    add("disconnected", severity,
        absl::StrCat("not connected for ", Dur(down), " (", std::string(what),
                     "; degraded after ", Dur(t.disconnected_degraded_after),
                     ", failed after ", Dur(t.disconnected_failed_after), ")",
                     LastError(s)),
        Secs(down),
        Secs(severity == HealthState::kFailed ? t.disconnected_failed_after
                                              : t.disconnected_degraded_after));
  };

  switch (s.state) {
    case StreamState::kAuthFailed:
      add("auth_failed", HealthState::kFailed,
          absl::StrCat("upstream refused the stream key (401) for ", Dur(down),
                       LastError(s)),
          Secs(down), 0);
      break;
    case StreamState::kTimepointExpired:
      if (s.next_retry_at == absl::InfinitePast()) {
        add("timepoint_expired", HealthState::kFailed,
            absl::StrCat("upstream answered 416 (timepoint too old) and the "
                         "stream stopped (--on_timepoint_expired=stop) ",
                         Dur(down), " ago", LastError(s)),
            Secs(down), 0);
      } else {
        disconnected("TIMEPOINT_EXPIRED, resuming from the head");
      }
      break;
    case StreamState::kStopped:
      add("stopped", HealthState::kFailed,
          absl::StrCat("the stream stopped ", Dur(down), " ago", LastError(s)),
          Secs(down), 0);
      break;
    case StreamState::kCircuitOpen: {
      const bool failed = down >= t.disconnected_failed_after;
      add("circuit_open",
          failed ? HealthState::kFailed : HealthState::kDegraded,
          absl::StrCat("circuit breaker open after repeated failures; not "
                       "connected for ",
                       Dur(down), " (failed after ",
                       Dur(t.disconnected_failed_after), ")", LastError(s)),
          Secs(down), Secs(t.disconnected_failed_after));
      break;
    }
    case StreamState::kConnecting:
    case StreamState::kBackingOff:
      disconnected(ingest::StreamStateName(s.state));
      break;
    case StreamState::kStreaming: {
      const absl::Time last_sign =
          std::max({s.last_heartbeat_at, s.last_event_at, s.connected_since});
      const absl::Duration quiet = now - last_sign;
      const bool stale = quiet >= t.heartbeat_stale_after;
      if (stale) {
        add("heartbeat_stale", HealthState::kDegraded,
            absl::StrCat("connected but nothing (not even a heartbeat) "
                         "received for ",
                         Dur(quiet), " (limit ", Dur(t.heartbeat_stale_after),
                         ")"),
            Secs(quiet), Secs(t.heartbeat_stale_after));
      }
      const absl::Duration event_age =
          now - std::max(s.last_event_at, h.first_seen);
      if (!stale && IsBusy(t, s.stream) && event_age >= t.stall_after) {
        add("stalled", HealthState::kDegraded,
            absl::StrCat("connected and heartbeats arrive, but no event for ",
                         Dur(event_age), " on a normally busy stream (limit ",
                         Dur(t.stall_after), ")"),
            Secs(event_age), Secs(t.stall_after));
      }
      if (s.lag_seconds > Secs(t.max_lag)) {
        add("lag", HealthState::kDegraded,
            absl::StrCat(
                "newest event received ", Dur(absl::Seconds(s.lag_seconds)),
                " after it was published (limit ", Dur(t.max_lag), ")"),
            s.lag_seconds, Secs(t.max_lag));
      }
      break;
    }
  }

  // Reconnects in the sliding window: samples at each change of the total;
  // the front is the newest sample at or before the window's start.
  auto& q = h.reconnect_samples;
  if (!q.empty() && s.reconnects_total < q.back().second) q.clear();
  if (q.empty() || q.back().second != s.reconnects_total) {
    q.emplace_back(now, s.reconnects_total);
  }
  while (q.size() >= 2 && q[1].first <= now - t.reconnect_window) q.pop_front();
  const uint64_t reconnects = s.reconnects_total - q.front().second;
  if (reconnects > static_cast<uint64_t>(t.max_reconnects_per_hour)) {
    add("reconnects", HealthState::kDegraded,
        absl::StrCat(reconnects, " connection ends in the last ",
                     Dur(t.reconnect_window), " (limit ",
                     t.max_reconnects_per_hour, ")", LastError(s)),
        static_cast<double>(reconnects), t.max_reconnects_per_hour);
  }

  std::map<std::string, absl::Time> since;
  for (HealthIssue& issue : issues) {
    auto it = h.issue_since.find(issue.rule);
    issue.since = it != h.issue_since.end() ? it->second : now;
    since[issue.rule] = issue.since;
  }
  h.issue_since = std::move(since);
  std::sort(issues.begin(), issues.end(),
            [](const HealthIssue& a, const HealthIssue& b) {
              if (a.severity != b.severity) return a.severity > b.severity;
              return a.rule < b.rule;
            });
  return issues;
}

std::vector<HealthIssue> EvaluateStorage(
    const storage::EventWriter::CommitHealth& commits, absl::Time now) {
  if (commits.consecutive_failures == 0) return {};
  HealthIssue issue;
  issue.rule = "storage";
  issue.severity = HealthState::kFailed;
  const absl::Duration failing =
      std::max(now - commits.failing_since, absl::ZeroDuration());
  issue.message = absl::StrCat(
      "storage commits fail (", commits.consecutive_failures, " attempts in ",
      Dur(failing), "; retried with backoff, nothing is lost): ",
      commits.last_error.message());
  issue.since = commits.failing_since;
  issue.value = Secs(failing);
  return {issue};
}

std::string AlertJson(const HealthTransition& t) {
  std::string out = "{\"service\":\"chstream\",\"time\":";
  AppendJsonString(&out, FormatRfc3339(t.at));
  out += ",\"stream\":";
  AppendJsonString(&out, t.stream);
  out += ",\"state\":";
  AppendJsonString(&out, HealthStateName(t.to));
  out += ",\"previous\":";
  AppendJsonString(&out, HealthStateName(t.from));
  out += ",\"rule\":";
  AppendJsonString(&out, t.issues.empty() ? "" : t.issues[0].rule);
  out += ",\"message\":";
  AppendJsonString(
      &out, t.issues.empty() ? "all health rules pass" : t.issues[0].message);
  out += ",\"issues\":[";
  for (size_t i = 0; i < t.issues.size(); ++i) {
    const HealthIssue& issue = t.issues[i];
    if (i > 0) out += ",";
    out += "{\"rule\":";
    AppendJsonString(&out, issue.rule);
    out += ",\"severity\":";
    AppendJsonString(&out, HealthStateName(issue.severity));
    out += ",\"message\":";
    AppendJsonString(&out, issue.message);
    out += ",\"since\":";
    AppendJsonString(&out, FormatRfc3339(issue.since));
    absl::StrAppend(&out, ",\"value\":", issue.value,
                    ",\"threshold\":", issue.threshold, "}");
  }
  out += "]}";
  return log::Redact(out);
}

HealthMonitor::HealthMonitor(Options options, Deps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {}

HealthMonitor::~HealthMonitor() { Stop(); }

void HealthMonitor::RegisterMetrics(MetricsRegistry& registry) {
  constexpr char kAlertsHelp[] =
      "Health alerts raised, by the state a stream moved to (recovered = "
      "back to healthy).";
  alerts_degraded_.store(&registry.AddCounter(
      "chstream_alerts_total", kAlertsHelp, {{"state", "degraded"}}));
  alerts_failed_.store(&registry.AddCounter(
      "chstream_alerts_total", kAlertsHelp, {{"state", "failed"}}));
  alerts_recovered_.store(&registry.AddCounter(
      "chstream_alerts_total", kAlertsHelp, {{"state", "recovered"}}));
  registry.AddCollector([this](Collection& out) {
    const HealthReport r = Report();
    if (r.evaluations == 0) return;
    for (const auto& [stream, state] : r.streams) {
      for (HealthState s : {HealthState::kHealthy, HealthState::kDegraded,
                            HealthState::kFailed}) {
        out.AddGauge(
            "chstream_health_state",
            "Health of an upstream stream as the health monitor "
            "evaluates it (1 for the current state).",
            {{"stream", stream}, {"state", std::string(HealthStateName(s))}},
            s == state ? 1 : 0);
      }
    }
    if (deps_.storage) {
      out.AddGauge("chstream_storage_failing",
                   "1 while storage commits fail (full disk, I/O error, "
                   "read-only file): ingestion waits and retries.",
                   {}, r.storage == HealthState::kFailed ? 1 : 0);
    }
    for (const HealthIssue& issue : r.issues) {
      out.AddGauge("chstream_health_issue",
                   "A failing health rule of a stream, or of storage "
                   "(stream=\"\"), 1 while it fails.",
                   {{"stream", issue.stream},
                    {"rule", issue.rule},
                    {"severity", std::string(HealthStateName(issue.severity))}},
                   1);
    }
  });
  if (deps_.webhook != nullptr) {
    AlertWebhook* webhook = deps_.webhook;
    registry.AddCollector([webhook](Collection& out) {
      const AlertWebhook::Stats s = webhook->GetStats();
      out.AddCounter("chstream_alert_webhook_delivered_total",
                     "Alerts the webhook answered with 2xx.", {},
                     static_cast<double>(s.delivered));
      out.AddCounter("chstream_alert_webhook_failures_total",
                     "Alerts given up after every webhook attempt failed.", {},
                     static_cast<double>(s.failures));
      out.AddCounter("chstream_alert_webhook_failed_attempts_total",
                     "Webhook POSTs that did not get a 2xx answer.", {},
                     static_cast<double>(s.failed_attempts));
      out.AddCounter("chstream_alert_webhook_dropped_total",
                     "Alerts dropped from the full webhook queue (oldest "
                     "first) or at shutdown.",
                     {}, static_cast<double>(s.dropped));
    });
  }
}

HealthReport HealthMonitor::Tick() {
  absl::MutexLock tick_lock(&tick_mu_);
  const absl::Time now = deps_.clock->Now();
  std::vector<ingest::StreamStatusSnapshot> snapshots;
  if (deps_.snapshots) snapshots = deps_.snapshots();

  HealthReport report;
  report.evaluated_at = now;
  for (const std::string& stream : options_.streams) {
    ingest::StreamStatusSnapshot missing;
    const ingest::StreamStatusSnapshot* snapshot = &missing;
    for (const ingest::StreamStatusSnapshot& s : snapshots) {
      if (s.stream == stream) snapshot = &s;
    }
    if (snapshot == &missing) {
      missing.stream = stream;
      missing.state = StreamState::kConnecting;
    }
    std::vector<HealthIssue> issues =
        EvaluateStream(*snapshot, now, options_.thresholds, history_[stream]);
    const HealthState state = WorstState(issues);
    report.streams[stream] = state;
    report.overall = std::max(report.overall, state);
    for (HealthIssue& issue : issues) report.issues.push_back(std::move(issue));
  }
  if (deps_.storage) {
    std::vector<HealthIssue> issues = EvaluateStorage(deps_.storage(), now);
    report.storage = WorstState(issues);
    report.overall = std::max(report.overall, report.storage);
    // Storage first: it stops every stream.
    report.issues.insert(report.issues.begin(), issues.begin(), issues.end());
  }
  if (deps_.cluster) {
    std::vector<HealthIssue> issues = deps_.cluster();
    report.storage = std::max(report.storage, WorstState(issues));
    report.overall = std::max(report.overall, report.storage);
    report.issues.insert(report.issues.begin(), issues.begin(), issues.end());
  }

  std::vector<HealthTransition> changes;
  {
    absl::MutexLock lock(&mu_);
    report.evaluations = report_.evaluations + 1;
    for (const auto& [stream, state] : report.streams) {
      auto prev = report_.streams.find(stream);
      const HealthState before =
          prev != report_.streams.end() ? prev->second : HealthState::kHealthy;
      if (before == state) continue;
      HealthTransition t;
      t.stream = stream;
      t.from = before;
      t.to = state;
      t.at = now;
      for (const HealthIssue& issue : report.issues) {
        if (issue.stream == stream) t.issues.push_back(issue);
      }
      changes.push_back(std::move(t));
    }
    if (report.storage != report_.storage) {
      HealthTransition t;
      t.from = report_.storage;
      t.to = report.storage;
      t.at = now;
      for (const HealthIssue& issue : report.issues) {
        if (issue.rule == "storage" || issue.rule == "leader") {
          t.issues.push_back(issue);
        }
      }
      changes.push_back(std::move(t));
    }
  }

  // Act first, publish after: whoever sees the new report (WaitFor) also
  // sees its serving status and alerts. Degraded keeps SERVING: a replica
  // catching up a backlog (lag) still serves everything it has.
  const int serving = report.overall != HealthState::kFailed ? 1 : 0;
  if (serving != serving_) {
    serving_ = serving;
    if (deps_.set_serving) deps_.set_serving(serving == 1);
  }
  for (const HealthTransition& t : changes) Alert(t);
  absl::MutexLock lock(&mu_);
  for (HealthTransition& t : changes) {
    transitions_.push_back(std::move(t));
    if (transitions_.size() > kMaxTransitions) transitions_.pop_front();
  }
  report_ = report;
  return report;
}

void HealthMonitor::Alert(const HealthTransition& t) {
  const HealthIssue* worst = t.issues.empty() ? nullptr : &t.issues[0];
  std::vector<std::string> rules;
  for (const HealthIssue& issue : t.issues) rules.push_back(issue.rule);
  const bool storage = t.stream.empty();
  log::Level level = log::Level::kInfo;
  std::string_view msg =
      storage ? "storage health recovered" : "stream health recovered";
  Counter* counter = alerts_recovered_.load();
  if (t.to == HealthState::kFailed) {
    level = log::Level::kError;
    msg = storage ? "storage health failed" : "stream health failed";
    counter = alerts_failed_.load();
  } else if (t.to == HealthState::kDegraded) {
    level = log::Level::kWarning;
    msg = storage ? "storage health degraded" : "stream health degraded";
    counter = alerts_degraded_.load();
  }
  log::Write(level, msg,
             {{"stream", t.stream},
              {"state", HealthStateName(t.to)},
              {"previous", HealthStateName(t.from)},
              {"rule", worst != nullptr ? worst->rule : std::string()},
              {"rules", absl::StrJoin(rules, ",")},
              {"value", worst != nullptr ? worst->value : 0.0},
              {"threshold", worst != nullptr ? worst->threshold : 0.0},
              {"detail", worst != nullptr ? worst->message
                                          : std::string("all health rules "
                                                        "pass")}});
  if (counter != nullptr) counter->Increment();
  if (deps_.webhook != nullptr) deps_.webhook->Enqueue(AlertJson(t));
}

void HealthMonitor::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) return;
  stop_ = std::make_unique<absl::Notification>();
  Tick();
  thread_ = std::thread([this, stop = stop_.get()] {
    SetCurrentThreadName("chs-health");
    while (!stop->WaitForNotificationWithTimeout(options_.tick_interval)) {
      Tick();
    }
  });
}

void HealthMonitor::Stop() {
  absl::MutexLock lock(&thread_mu_);
  if (!thread_.joinable()) return;
  stop_->Notify();
  thread_.join();
}

HealthReport HealthMonitor::Report() const {
  absl::MutexLock lock(&mu_);
  return report_;
}

std::vector<HealthTransition> HealthMonitor::Transitions() const {
  absl::MutexLock lock(&mu_);
  return {transitions_.begin(), transitions_.end()};
}

void HealthMonitor::FillHealth(v1::HealthStatus* out) const {
  absl::MutexLock lock(&mu_);
  out->Clear();
  out->set_overall(report_.evaluations == 0
                       ? "unknown"
                       : std::string(HealthStateName(report_.overall)));
  for (const HealthIssue& issue : report_.issues) {
    v1::HealthIssue* p = out->add_issues();
    p->set_stream(issue.stream);
    p->set_rule(issue.rule);
    p->set_severity(std::string(HealthStateName(issue.severity)));
    p->set_message(log::Redact(issue.message));
    *p->mutable_since() = ToTimestamp(issue.since);
  }
}

bool HealthMonitor::WaitFor(
    const std::function<bool(const HealthReport&)>& predicate,
    absl::Duration timeout) const {
  struct Arg {
    const HealthMonitor* self;
    const std::function<bool(const HealthReport&)>* predicate;
  } arg{this, &predicate};
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(
                                  +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                    return (*a->predicate)(a->self->report_);
                                  },
                                  &arg),
                              timeout);
}

}  // namespace chstream::server
