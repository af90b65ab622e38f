// Tests of server/health_monitor.h: every rule and transition exactly with a
// FakeClock over synthetic snapshots; then the real pipeline (simulator,
// Ingester, WriterSink, EventWriter, Store) for stall, outage, 401, 416 with
// stop and 429; and grpc.health.v1 Check/Watch of "ingest" on a real server.
#include "server/health_monitor.h"

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "ingest/ingester.h"
#include "ingest/simulator/simulator.h"
#include "ingest/writer_sink.h"
#include "server/metrics.h"
#include "storage/event_writer.h"
#include "storage/store.h"
#include "tests/integration/test_server.h"
#include "tests/testing/slowdown.h"

namespace chstream::server {
namespace {

using ::chstream::testing::Scaled;
using ingest::StreamState;
using ingest::StreamStatusSnapshot;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// Captures log lines for the lifetime of the object.
class LogCapture {
 public:
  LogCapture() {
    log::SetSinkForTest([this](std::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
    });
  }
  ~LogCapture() { log::SetSinkForTest(nullptr); }

  // Lines containing every one of `parts`.
  std::vector<std::string> Matching(std::vector<std::string> parts) const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const std::string& line : lines_) {
      bool all = true;
      for (const std::string& p : parts)
        all = all && absl::StrContains(line, p);
      if (all) out.push_back(line);
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

std::vector<std::string> Rules(const std::vector<HealthIssue>& issues) {
  std::vector<std::string> out;
  for (const HealthIssue& i : issues) out.push_back(i.rule);
  return out;
}

// A companies stream streaming since `t` with fresh heartbeat and event.
StreamStatusSnapshot Streaming(absl::Time t,
                               const std::string& stream = "companies") {
  StreamStatusSnapshot s;
  s.stream = stream;
  s.state = StreamState::kStreaming;
  s.connected_since = t;
  s.last_heartbeat_at = t;
  s.last_event_at = t;
  return s;
}

StreamStatusSnapshot InState(StreamState state,
                             const std::string& stream = "companies") {
  StreamStatusSnapshot s;
  s.stream = stream;
  s.state = state;
  s.next_retry_at = absl::FromUnixSeconds(1);
  return s;
}

class EvaluateTest : public ::testing::Test {
 protected:
  std::vector<HealthIssue> Eval(const StreamStatusSnapshot& s) {
    return EvaluateStream(s, clock_.Now(), thresholds_, history_);
  }
  FakeClock clock_;
  HealthThresholds thresholds_;
  StreamHealthHistory history_;
};

TEST_F(EvaluateTest, StreamingWithFreshEventsIsHealthy) {
  EXPECT_THAT(Eval(Streaming(clock_.Now())), IsEmpty());
}

TEST_F(EvaluateTest, ConnectingIsDegradedAfterGraceAndFailedLater) {
  const StreamStatusSnapshot s = InState(StreamState::kConnecting);
  EXPECT_THAT(Eval(s), IsEmpty());
  clock_.Advance(absl::Minutes(2) - absl::Seconds(1));
  EXPECT_THAT(Eval(s), IsEmpty());
  clock_.Advance(absl::Seconds(1));
  std::vector<HealthIssue> issues = Eval(s);
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].rule, "disconnected");
  EXPECT_EQ(issues[0].severity, HealthState::kDegraded);
  EXPECT_EQ(issues[0].value, 120);
  EXPECT_EQ(issues[0].threshold, 120);
  EXPECT_EQ(issues[0].since, clock_.Now());
  const absl::Time degraded_at = clock_.Now();
  clock_.Advance(absl::Minutes(13) - absl::Seconds(1));
  issues = Eval(InState(StreamState::kBackingOff));
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].severity, HealthState::kDegraded);
  clock_.Advance(absl::Seconds(1));
  issues = Eval(InState(StreamState::kBackingOff));
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].severity, HealthState::kFailed);
  EXPECT_EQ(issues[0].since, degraded_at);  // the rule kept failing
  EXPECT_THAT(issues[0].message, HasSubstr("not connected for 15m"));
}

TEST_F(EvaluateTest, ReconnectingResetsTheDisconnectedClock) {
  Eval(InState(StreamState::kBackingOff));
  clock_.Advance(absl::Minutes(1));
  Eval(Streaming(clock_.Now()));
  clock_.Advance(absl::Seconds(1));
  Eval(InState(StreamState::kBackingOff));
  clock_.Advance(absl::Minutes(2) - absl::Seconds(1));
  EXPECT_THAT(Eval(InState(StreamState::kBackingOff)), IsEmpty());
}

TEST_F(EvaluateTest, AuthFailedIsFailedAtOnce) {
  StreamStatusSnapshot s = InState(StreamState::kAuthFailed);
  s.last_http_status = 401;
  std::vector<HealthIssue> issues = Eval(s);
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].rule, "auth_failed");
  EXPECT_EQ(issues[0].severity, HealthState::kFailed);
  EXPECT_THAT(issues[0].message, HasSubstr("last HTTP status 401"));
}

TEST_F(EvaluateTest, TimepointExpiredWithStopIsFailed) {
  StreamStatusSnapshot s = InState(StreamState::kTimepointExpired);
  s.next_retry_at = absl::InfinitePast();  // stopped
  std::vector<HealthIssue> issues = Eval(s);
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].rule, "timepoint_expired");
  EXPECT_EQ(issues[0].severity, HealthState::kFailed);
}

// Verifies a 416 that resumes from the head is only a short disconnection.
TEST_F(EvaluateTest, TimepointExpiredResumingIsADisconnection) {
  const StreamStatusSnapshot s = InState(StreamState::kTimepointExpired);
  EXPECT_THAT(Eval(s), IsEmpty());
  clock_.Advance(absl::Minutes(2));
  EXPECT_THAT(Rules(Eval(s)), ElementsAre("disconnected"));
}

TEST_F(EvaluateTest, StoppedIsFailed) {
  std::vector<HealthIssue> issues = Eval(InState(StreamState::kStopped));
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].rule, "stopped");
  EXPECT_EQ(issues[0].severity, HealthState::kFailed);
}

TEST_F(EvaluateTest, CircuitOpenIsDegradedThenFailedByDuration) {
  const StreamStatusSnapshot s = InState(StreamState::kCircuitOpen);
  std::vector<HealthIssue> issues = Eval(s);
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].rule, "circuit_open");
  EXPECT_EQ(issues[0].severity, HealthState::kDegraded);
  clock_.Advance(absl::Minutes(15) - absl::Seconds(1));
  EXPECT_EQ(Eval(s)[0].severity, HealthState::kDegraded);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Eval(s)[0].severity, HealthState::kFailed);
}

TEST_F(EvaluateTest, StallOnBusyStreamWithHeartbeats) {
  const absl::Time last_event = clock_.Now();
  StreamStatusSnapshot s = Streaming(last_event);
  Eval(s);
  clock_.Advance(absl::Minutes(15) - absl::Seconds(1));
  s.last_heartbeat_at = clock_.Now();
  EXPECT_THAT(Eval(s), IsEmpty());
  clock_.Advance(absl::Seconds(1));
  s.last_heartbeat_at = clock_.Now();
  std::vector<HealthIssue> issues = Eval(s);
  ASSERT_THAT(issues, SizeIs(1));
  EXPECT_EQ(issues[0].rule, "stalled");
  EXPECT_EQ(issues[0].severity, HealthState::kDegraded);
  EXPECT_EQ(issues[0].value, 900);
  EXPECT_EQ(issues[0].threshold, 900);
  // An event clears it.
  s.last_event_at = clock_.Now();
  EXPECT_THAT(Eval(s), IsEmpty());
}

TEST_F(EvaluateTest, QuietStreamThatIsNotBusyDoesNotStall) {
  StreamStatusSnapshot s = Streaming(clock_.Now(), "charges");
  Eval(s);
  clock_.Advance(absl::Hours(2));
  s.last_heartbeat_at = clock_.Now();
  EXPECT_THAT(Eval(s), IsEmpty());
  thresholds_.busy_streams = {"charges"};
  EXPECT_THAT(Rules(Eval(s)), ElementsAre("stalled"));
}

// Verifies a stream with no event since start-up stalls from the monitor's
// first look, not from the epoch.
TEST_F(EvaluateTest, StallWithoutAnyEventCountsFromFirstEvaluation) {
  StreamStatusSnapshot s = Streaming(clock_.Now());
  s.last_event_at = absl::InfinitePast();
  EXPECT_THAT(Eval(s), IsEmpty());
  clock_.Advance(absl::Minutes(15));
  s.last_heartbeat_at = clock_.Now();
  EXPECT_THAT(Rules(Eval(s)), ElementsAre("stalled"));
}

TEST_F(EvaluateTest, SilentConnectionIsHeartbeatStaleNotStalled) {
  StreamStatusSnapshot s = Streaming(clock_.Now());
  clock_.Advance(absl::Minutes(3) - absl::Seconds(1));
  EXPECT_THAT(Eval(s), IsEmpty());
  clock_.Advance(absl::Minutes(20));
  std::vector<HealthIssue> issues = Eval(s);
  EXPECT_THAT(Rules(issues), ElementsAre("heartbeat_stale"));
  EXPECT_EQ(issues[0].severity, HealthState::kDegraded);
}

TEST_F(EvaluateTest, LagAboveMax) {
  StreamStatusSnapshot s = Streaming(clock_.Now());
  s.lag_seconds = 600;
  EXPECT_THAT(Eval(s), IsEmpty());
  s.lag_seconds = 600.5;
  std::vector<HealthIssue> issues = Eval(s);
  EXPECT_THAT(Rules(issues), ElementsAre("lag"));
  EXPECT_EQ(issues[0].value, 600.5);
}

TEST_F(EvaluateTest, ReconnectsInSlidingHour) {
  StreamStatusSnapshot s = Streaming(clock_.Now());
  s.reconnects_total = 100;  // before the monitor started: not counted
  EXPECT_THAT(Eval(s), IsEmpty());
  clock_.Advance(absl::Minutes(10));
  s.last_event_at = s.last_heartbeat_at = clock_.Now();
  s.reconnects_total = 130;
  EXPECT_THAT(Eval(s), IsEmpty());  // 30 = the limit
  clock_.Advance(absl::Minutes(10));
  s.last_event_at = s.last_heartbeat_at = clock_.Now();
  s.reconnects_total = 131;
  std::vector<HealthIssue> issues = Eval(s);
  EXPECT_THAT(Rules(issues), ElementsAre("reconnects"));
  EXPECT_EQ(issues[0].value, 31);
  // One hour after the first 30, only the last one is in the window.
  clock_.Advance(absl::Minutes(50));
  s.last_event_at = s.last_heartbeat_at = clock_.Now();
  EXPECT_THAT(Eval(s), IsEmpty());
}

TEST_F(EvaluateTest, IssuesAreWorstFirst) {
  StreamStatusSnapshot s = InState(StreamState::kCircuitOpen);
  Eval(s);
  s.reconnects_total = 31;
  clock_.Advance(absl::Minutes(15));
  std::vector<HealthIssue> issues = Eval(s);
  EXPECT_THAT(Rules(issues), ElementsAre("circuit_open", "reconnects"));
  EXPECT_EQ(WorstState(issues), HealthState::kFailed);
}

// ---------------------------------------------------------------------------
// HealthMonitor with a FakeClock.

class MonitorTest : public ::testing::Test {
 protected:
  MonitorTest() {
    HealthMonitor::Options options;
    options.streams = {"companies", "charges"};
    HealthMonitor::Deps deps;
    deps.clock = &clock_;
    deps.snapshots = [this] {
      absl::MutexLock lock(&mu_);
      return snapshots_;
    };
    deps.set_serving = [this](bool serving) {
      absl::MutexLock lock(&mu_);
      serving_calls_.push_back(serving);
    };
    monitor_ = std::make_unique<HealthMonitor>(options, deps);
    monitor_->RegisterMetrics(registry_);
  }
  void Set(std::vector<StreamStatusSnapshot> s) {
    absl::MutexLock lock(&mu_);
    snapshots_ = std::move(s);
  }
  std::vector<bool> ServingCalls() {
    absl::MutexLock lock(&mu_);
    return serving_calls_;
  }

  LogCapture logs_;
  FakeClock clock_;
  MetricsRegistry registry_;
  absl::Mutex mu_;
  std::vector<StreamStatusSnapshot> snapshots_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> serving_calls_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HealthMonitor> monitor_;
};

TEST_F(MonitorTest, UnknownBeforeFirstEvaluation) {
  v1::HealthStatus h;
  monitor_->FillHealth(&h);
  EXPECT_EQ(h.overall(), "unknown");
}

TEST_F(MonitorTest, TransitionsAlertOncePerChangeAndDriveServing) {
  Set({Streaming(clock_.Now()), Streaming(clock_.Now(), "charges")});
  EXPECT_EQ(monitor_->Tick().overall, HealthState::kHealthy);
  EXPECT_THAT(ServingCalls(), ElementsAre(true));

  // companies stalls: degraded, one warning line, still SERVING.
  clock_.Advance(absl::Minutes(15));
  StreamStatusSnapshot companies = Streaming(clock_.Now() - absl::Minutes(15));
  companies.last_heartbeat_at = clock_.Now();
  StreamStatusSnapshot charges = Streaming(clock_.Now(), "charges");
  Set({companies, charges});
  HealthReport r = monitor_->Tick();
  EXPECT_EQ(r.overall, HealthState::kDegraded);
  EXPECT_EQ(r.streams["companies"], HealthState::kDegraded);
  EXPECT_EQ(r.streams["charges"], HealthState::kHealthy);
  monitor_->Tick();  // same state: no new alert
  EXPECT_THAT(ServingCalls(), ElementsAre(true));
  std::vector<std::string> warn = logs_.Matching(
      {R"("level":"warning")", R"("msg":"stream health degraded")",
       R"("stream":"companies")", R"("rule":"stalled")", R"("value":900)",
       R"("threshold":900)"});
  EXPECT_THAT(warn, SizeIs(1));
  v1::HealthStatus h;
  monitor_->FillHealth(&h);
  EXPECT_EQ(h.overall(), "degraded");
  ASSERT_EQ(h.issues_size(), 1);
  EXPECT_EQ(h.issues(0).stream(), "companies");
  EXPECT_EQ(h.issues(0).rule(), "stalled");
  EXPECT_EQ(h.issues(0).severity(), "degraded");
  EXPECT_EQ(h.issues(0).since().seconds(), absl::ToUnixSeconds(clock_.Now()));

  // charges loses its key: failed, an error line, NOT_SERVING.
  Set({companies, InState(StreamState::kAuthFailed, "charges")});
  r = monitor_->Tick();
  EXPECT_EQ(r.overall, HealthState::kFailed);
  EXPECT_THAT(
      logs_.Matching({R"("level":"error")", R"("msg":"stream health failed")",
                      R"("stream":"charges")", R"("rule":"auth_failed")"}),
      SizeIs(1));
  EXPECT_THAT(ServingCalls(), ElementsAre(true, false));

  // Both recover: two info lines, SERVING again.
  companies.last_event_at = clock_.Now();
  Set({companies, Streaming(clock_.Now(), "charges")});
  EXPECT_EQ(monitor_->Tick().overall, HealthState::kHealthy);
  EXPECT_THAT(logs_.Matching(
                  {R"("level":"info")", R"("msg":"stream health recovered")"}),
              SizeIs(2));
  EXPECT_THAT(ServingCalls(), ElementsAre(true, false, true));

  std::vector<HealthTransition> t = monitor_->Transitions();
  ASSERT_THAT(t, SizeIs(4));
  EXPECT_EQ(t[0].stream, "companies");
  EXPECT_EQ(t[0].to, HealthState::kDegraded);
  EXPECT_EQ(t[1].stream, "charges");
  EXPECT_EQ(t[1].to, HealthState::kFailed);
  EXPECT_EQ(t[2].from, HealthState::kFailed);
  EXPECT_EQ(t[2].to, HealthState::kHealthy);

  const std::string metrics = registry_.Render();
  EXPECT_THAT(metrics,
              HasSubstr(R"(chstream_alerts_total{state="degraded"} 1)"));
  EXPECT_THAT(metrics, HasSubstr(R"(chstream_alerts_total{state="failed"} 1)"));
  EXPECT_THAT(metrics,
              HasSubstr(R"(chstream_alerts_total{state="recovered"} 2)"));
  EXPECT_THAT(
      metrics,
      HasSubstr(
          R"(chstream_health_state{stream="companies",state="healthy"} 1)"));
}

TEST_F(MonitorTest, DegradedThenFailedThenRecoveredLogsEachOnce) {
  Set({InState(StreamState::kBackingOff), Streaming(clock_.Now(), "charges")});
  monitor_->Tick();
  for (int i = 0; i < 20; ++i) {  // 20 minutes, a tick a minute
    clock_.Advance(absl::Minutes(1));
    Set({InState(StreamState::kBackingOff),
         Streaming(clock_.Now(), "charges")});
    monitor_->Tick();
  }
  EXPECT_THAT(logs_.Matching({R"("msg":"stream health degraded")",
                              R"("rule":"disconnected")", R"("value":120)"}),
              SizeIs(1));
  EXPECT_THAT(logs_.Matching({R"("msg":"stream health failed")",
                              R"("previous":"degraded")",
                              R"("rule":"disconnected")", R"("value":900)"}),
              SizeIs(1));
  EXPECT_THAT(logs_.Matching({R"("msg":"stream health )"}), SizeIs(2));
  const std::string metrics = registry_.Render();
  EXPECT_THAT(metrics,
              HasSubstr("chstream_health_issue{stream=\"companies\","
                        "rule=\"disconnected\",severity=\"failed\"} 1"));
}

// Verifies a configured stream that the ingester does not report yet is
// treated as connecting.
TEST_F(MonitorTest, MissingStreamCountsAsConnecting) {
  Set({Streaming(clock_.Now(), "charges")});
  EXPECT_EQ(monitor_->Tick().overall, HealthState::kHealthy);
  clock_.Advance(absl::Minutes(2));
  Set({Streaming(clock_.Now(), "charges")});
  HealthReport r = monitor_->Tick();
  EXPECT_EQ(r.streams["companies"], HealthState::kDegraded);
  ASSERT_THAT(r.issues, SizeIs(1));
  EXPECT_EQ(r.issues[0].rule, "disconnected");
}

// Verifies a stream catching up a backlog (old published_at: lag above
// max_lag) is degraded with an alert but keeps "ingest" SERVING: a busy,
// healthy replica must not leave the load balancer.
TEST_F(MonitorTest, LagWhileCatchingUpDegradesButKeepsServing) {
  Set({Streaming(clock_.Now()), Streaming(clock_.Now(), "charges")});
  monitor_->Tick();
  StreamStatusSnapshot companies = Streaming(clock_.Now());
  companies.lag_seconds = 3600;  // a backlog from an hour ago
  Set({companies, Streaming(clock_.Now(), "charges")});
  HealthReport r = monitor_->Tick();
  EXPECT_EQ(r.overall, HealthState::kDegraded);
  EXPECT_THAT(Rules(r.issues), ElementsAre("lag"));
  EXPECT_THAT(ServingCalls(), ElementsAre(true));
  EXPECT_THAT(
      logs_.Matching({R"("level":"warning")",
                      R"("msg":"stream health degraded")", R"("rule":"lag")"}),
      SizeIs(1));
}

// Verifies failing storage commits fail health at once, with the SQLite
// error, turn "ingest" NOT_SERVING, alert and show in a metric; a
// successful commit recovers all of it.
TEST_F(MonitorTest, StorageFailureFailsHealthAndStopsServing) {
  storage::EventWriter::CommitHealth commits;
  absl::Mutex commits_mu;
  HealthMonitor::Options options;
  options.streams = {"companies"};
  HealthMonitor::Deps deps;
  deps.clock = &clock_;
  deps.snapshots = [this] {
    absl::MutexLock lock(&mu_);
    return snapshots_;
  };
  deps.set_serving = [this](bool serving) {
    absl::MutexLock lock(&mu_);
    serving_calls_.push_back(serving);
  };
  deps.storage = [&] {
    absl::MutexLock lock(&commits_mu);
    return commits;
  };
  MetricsRegistry registry;
  HealthMonitor monitor(options, deps);
  monitor.RegisterMetrics(registry);
  Set({Streaming(clock_.Now())});
  EXPECT_EQ(monitor.Tick().overall, HealthState::kHealthy);
  EXPECT_THAT(registry.Render(), HasSubstr("chstream_storage_failing 0"));

  {
    absl::MutexLock lock(&commits_mu);
    commits.consecutive_failures = 3;
    commits.failing_since = clock_.Now();
    commits.last_error = absl::ResourceExhaustedError(
        "commit (/x/chstream.db): database or disk is full [sqlite 13]");
  }
  clock_.Advance(absl::Seconds(2));
  Set({Streaming(clock_.Now())});
  HealthReport r = monitor.Tick();
  EXPECT_EQ(r.overall, HealthState::kFailed);
  EXPECT_EQ(r.storage, HealthState::kFailed);
  ASSERT_THAT(Rules(r.issues), ElementsAre("storage"));
  EXPECT_EQ(r.issues[0].stream, "");
  EXPECT_THAT(ServingCalls(), ElementsAre(true, false));
  v1::HealthStatus h;
  monitor.FillHealth(&h);
  EXPECT_EQ(h.overall(), "failed");
  ASSERT_EQ(h.issues_size(), 1);
  EXPECT_EQ(h.issues(0).rule(), "storage");
  EXPECT_EQ(h.issues(0).severity(), "failed");
  EXPECT_THAT(h.issues(0).message(), HasSubstr("database or disk is full"));
  EXPECT_THAT(h.issues(0).message(), HasSubstr("3 attempts in 2s"));
  EXPECT_THAT(
      logs_.Matching({R"("level":"error")", R"("msg":"storage health failed")",
                      R"("rule":"storage")", "disk is full"}),
      SizeIs(1));
  const std::string metrics = registry.Render();
  EXPECT_THAT(metrics, HasSubstr("chstream_storage_failing 1"));
  EXPECT_THAT(metrics, HasSubstr("chstream_health_issue{stream=\"\","
                                 "rule=\"storage\",severity=\"failed\"} 1"));
  EXPECT_THAT(metrics, HasSubstr(R"(chstream_alerts_total{state="failed"} 1)"));

  {
    absl::MutexLock lock(&commits_mu);
    commits = storage::EventWriter::CommitHealth();
  }
  r = monitor.Tick();
  EXPECT_EQ(r.overall, HealthState::kHealthy);
  EXPECT_THAT(ServingCalls(), ElementsAre(true, false, true));
  EXPECT_THAT(logs_.Matching({R"("msg":"storage health recovered")"}),
              SizeIs(1));
}

TEST(AlertJsonTest, HasTheFieldsAndRedactsSecrets) {
  log::AddSecret("sekrit-key-123");
  HealthTransition t;
  t.stream = "companies";
  t.from = HealthState::kHealthy;
  t.to = HealthState::kFailed;
  t.at = absl::FromUnixSeconds(1'700'000'000);
  HealthIssue issue;
  issue.stream = "companies";
  issue.rule = "auth_failed";
  issue.severity = HealthState::kFailed;
  issue.message = "401 for key sekrit-key-123";
  issue.since = t.at;
  t.issues = {issue};
  const std::string json = AlertJson(t);
  EXPECT_THAT(json, HasSubstr(R"("stream":"companies")"));
  EXPECT_THAT(json, HasSubstr(R"("state":"failed","previous":"healthy")"));
  EXPECT_THAT(json, HasSubstr(R"("rule":"auth_failed")"));
  EXPECT_THAT(json, HasSubstr(R"("time":"2023-11-14T22:13:20)"));
  EXPECT_THAT(json, Not(HasSubstr("sekrit")));
  EXPECT_THAT(json, HasSubstr("[REDACTED]"));
}

// ---------------------------------------------------------------------------
// The real pipeline: simulator -> Ingester -> WriterSink -> EventWriter ->
// Store, monitored on the real clock with tiny thresholds.

constexpr char kKey[] = "health-key";

ingest::ReconnectPolicy::Options FastPolicy() {
  ingest::ReconnectPolicy::Options p;
  p.auth_retry_interval = absl::Hours(1);
  p.error_backoff_initial = absl::Milliseconds(10);
  p.error_backoff_max = absl::Milliseconds(100);
  p.rate_limit_min = absl::Milliseconds(100);
  p.rate_limit_max = absl::Milliseconds(200);
  p.short_delay_min = absl::Milliseconds(5);
  p.short_delay_max = absl::Milliseconds(20);
  p.breaker_failures = 1000;
  p.breaker_cooldown = absl::Milliseconds(100);
  p.breaker_max_cooldown = absl::Milliseconds(400);
  return p;
}

std::string DbPath() {
  const char* dir = std::getenv("TEST_TMPDIR");
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", info->name(), ".db");
}

class Pipeline {
 public:
  Pipeline() {
    auto store = storage::Store::Open(DbPath());
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    writer_ = std::make_unique<storage::EventWriter>(
        store_.get(), storage::EventWriter::Options{},
        [this](const storage::CommitResult& result) {
          if (ingest::Ingester* i = live_.load()) i->OnCommitted(result);
        },
        Clock::Real());
    writer_->Start();
    sink_ = std::make_unique<ingest::WriterSink>(writer_.get());
  }
  ~Pipeline() {
    live_.store(nullptr);
    if (ingester_ != nullptr) ingester_->Stop();
    writer_->Stop();
  }

  absl::Status StartIngester(
      const ingest::sim::Simulator& sim, const std::string& key,
      ingest::TimepointExpiredAction on_expired =
          ingest::TimepointExpiredAction::kResumeFromHead,
      std::map<std::string, int64_t> start = {}) {
    ingest::IngesterOptions o;
    o.upstream_url = sim.url();
    o.keys = {key};
    o.streams = {"companies"};
    o.start_timepoints = std::move(start);
    o.connect_timeout = absl::Seconds(5);
    o.header_timeout = absl::Seconds(5);
    o.idle_timeout = absl::Seconds(5);
    o.policy = FastPolicy();
    o.policy.on_timepoint_expired = on_expired;
    o.seed = 7;
    ingester_ =
        std::make_unique<ingest::Ingester>(o, sink_.get(), Clock::Real());
    absl::StatusOr<std::vector<storage::StreamState>> states =
        store_->LoadStreamStates();
    if (!states.ok()) return states.status();
    absl::Status s = ingester_->Start(*states);
    if (s.ok()) live_.store(ingester_.get());
    return s;
  }

  std::vector<StreamStatusSnapshot> Snapshot() {
    ingest::Ingester* i = live_.load();
    return i != nullptr ? i->Snapshot() : std::vector<StreamStatusSnapshot>{};
  }

 private:
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::EventWriter> writer_;
  std::unique_ptr<ingest::WriterSink> sink_;
  std::unique_ptr<ingest::Ingester> ingester_;
  std::atomic<ingest::Ingester*> live_{nullptr};
};

ingest::sim::Options SimOptions() {
  ingest::sim::Options o;
  o.keys = {kKey};
  o.seed = 99;
  o.streams = {"companies"};
  o.companies_rate = 200;
  o.heartbeat_interval = absl::Milliseconds(20);
  o.retention_events = 100000;
  return o;
}

// Scaled (tests/testing/slowdown.h): under --config=tsan a 200 ms
// disconnection was sometimes seen twice (a slow reconnect after recovery)
// and the test counted two "degraded" logs where it expects one.
HealthThresholds TinyThresholds() {
  HealthThresholds t;
  t.stall_after = Scaled(absl::Milliseconds(400));
  t.heartbeat_stale_after = Scaled(absl::Seconds(3));
  t.disconnected_degraded_after = Scaled(absl::Milliseconds(200));
  t.disconnected_failed_after = Scaled(absl::Milliseconds(1500));
  t.max_lag = absl::Minutes(10);
  t.max_reconnects_per_hour = 1000;
  return t;
}

// TinyThresholds where a disconnected stream stays degraded: with the 1.5 s
// step to failed, a loaded machine could miss the degraded state in between.
HealthThresholds DegradedStaysDegraded() {
  HealthThresholds t = TinyThresholds();
  t.disconnected_failed_after = absl::Minutes(10);
  return t;
}

class HealthIntegrationTest : public ::testing::Test {
 protected:
  void StartMonitor(HealthThresholds thresholds = TinyThresholds()) {
    HealthMonitor::Options options;
    options.streams = {"companies"};
    options.thresholds = thresholds;
    options.tick_interval = absl::Milliseconds(10);
    HealthMonitor::Deps deps;
    deps.clock = Clock::Real();
    deps.snapshots = [this] { return pipeline_.Snapshot(); };
    monitor_ = std::make_unique<HealthMonitor>(options, deps);
    monitor_->Start();
  }
  bool WaitState(HealthState state, const std::string& rule = "") {
    return monitor_->WaitFor(
        [&](const HealthReport& r) {
          if (r.overall != state) return false;
          if (rule.empty()) return true;
          for (const HealthIssue& i : r.issues) {
            if (i.rule == rule) return true;
          }
          return false;
        },
        Scaled(absl::Seconds(20)));
  }
  void TearDown() override {
    if (monitor_ != nullptr) monitor_->Stop();
  }

  LogCapture logs_;
  Pipeline pipeline_;
  std::unique_ptr<HealthMonitor> monitor_;
};

TEST_F(HealthIntegrationTest, StallWhileHeartbeatsContinueThenRecovers) {
  ASSERT_OK_AND_ASSIGN(auto sim, ingest::sim::Simulator::Start(SimOptions()));
  ASSERT_OK(pipeline_.StartIngester(*sim, kKey));
  StartMonitor();
  ASSERT_TRUE(monitor_->WaitFor([](const HealthReport&) { return true; },
                                absl::Seconds(5)));
  // Events flowing: healthy.
  ASSERT_TRUE(sim->WaitFor(
      [](const ingest::sim::Stats& s) {
        auto it = s.events_sent.find("companies");
        return it != s.events_sent.end() && it->second > 5;
      },
      absl::Seconds(20)));
  ASSERT_TRUE(WaitState(HealthState::kHealthy));
  ingest::sim::Faults stall;
  stall.stall = true;
  sim->SetFaults("companies", stall);
  ASSERT_TRUE(WaitState(HealthState::kDegraded, "stalled"));
  EXPECT_THAT(logs_.Matching(
                  {R"("level":"warning")", R"("msg":"stream health degraded")",
                   R"("stream":"companies")", R"("rule":"stalled")"}),
              SizeIs(1));
  sim->ClearStreamFaults("companies");
  ASSERT_TRUE(WaitState(HealthState::kHealthy));
  EXPECT_THAT(logs_.Matching(
                  {R"("level":"info")", R"("msg":"stream health recovered")"}),
              SizeIs(1));
}

TEST_F(HealthIntegrationTest, OutageDegradesThenFails) {
  ASSERT_OK_AND_ASSIGN(auto sim, ingest::sim::Simulator::Start(SimOptions()));
  ASSERT_OK(pipeline_.StartIngester(*sim, kKey));
  StartMonitor();
  ASSERT_TRUE(sim->WaitFor(
      [](const ingest::sim::Stats& s) { return s.OpenConnections() > 0; },
      absl::Seconds(20)));
  ASSERT_TRUE(WaitState(HealthState::kHealthy));
  sim->Stop();
  ASSERT_TRUE(WaitState(HealthState::kFailed, "disconnected"));
  EXPECT_THAT(logs_.Matching({R"("level":"warning")",
                              R"("msg":"stream health degraded")",
                              R"("rule":"disconnected")"}),
              SizeIs(1));
  EXPECT_THAT(
      logs_.Matching({R"("level":"error")", R"("msg":"stream health failed")",
                      R"("previous":"degraded")", R"("rule":"disconnected")"}),
      SizeIs(1));
}

TEST_F(HealthIntegrationTest, ServiceUnavailableResponsesDegrade) {
  ingest::sim::Options o = SimOptions();
  o.faults.fail_first_attempts = 1000000;
  o.faults.fail_status = 503;
  ASSERT_OK_AND_ASSIGN(auto sim, ingest::sim::Simulator::Start(o));
  ASSERT_OK(pipeline_.StartIngester(*sim, kKey));
  StartMonitor(DegradedStaysDegraded());
  ASSERT_TRUE(WaitState(HealthState::kDegraded, "disconnected"));
  EXPECT_THAT(
      logs_.Matching({R"("msg":"stream health degraded")",
                      R"("rule":"disconnected")", R"(last HTTP status 503)"}),
      SizeIs(1));
}

TEST_F(HealthIntegrationTest, UnauthorizedFailsAtOnce) {
  ASSERT_OK_AND_ASSIGN(auto sim, ingest::sim::Simulator::Start(SimOptions()));
  ASSERT_OK(pipeline_.StartIngester(*sim, "not-the-key"));
  StartMonitor();
  ASSERT_TRUE(WaitState(HealthState::kFailed, "auth_failed"));
  EXPECT_THAT(
      logs_.Matching({R"("level":"error")", R"("msg":"stream health failed")",
                      R"("previous":"healthy")", R"("rule":"auth_failed")"}),
      SizeIs(1));
}

TEST_F(HealthIntegrationTest, TimepointExpiredWithStopFails) {
  ASSERT_OK_AND_ASSIGN(auto sim, ingest::sim::Simulator::Start(SimOptions()));
  // A timepoint far beyond the head gets 416.
  ASSERT_OK(pipeline_.StartIngester(*sim, kKey,
                                    ingest::TimepointExpiredAction::kStop,
                                    {{"companies", int64_t{900'000'000'000}}}));
  StartMonitor();
  ASSERT_TRUE(WaitState(HealthState::kFailed, "timepoint_expired"));
  EXPECT_THAT(
      logs_.Matching({R"("level":"error")", R"("msg":"stream health failed")",
                      R"("rule":"timepoint_expired")"}),
      SizeIs(1));
}

TEST_F(HealthIntegrationTest, RateLimitedDegrades) {
  ingest::sim::Options o = SimOptions();
  o.faults.fail_first_attempts = 1000000;
  o.faults.fail_status = 429;
  ASSERT_OK_AND_ASSIGN(auto sim, ingest::sim::Simulator::Start(o));
  ASSERT_OK(pipeline_.StartIngester(*sim, kKey));
  StartMonitor(DegradedStaysDegraded());
  ASSERT_TRUE(WaitState(HealthState::kDegraded, "disconnected"));
  EXPECT_THAT(logs_.Matching({R"("level":"warning")",
                              R"("msg":"stream health degraded")",
                              R"(last HTTP status 429)"}),
              SizeIs(1));
}

// ---------------------------------------------------------------------------
// grpc.health.v1 "ingest" on a real server: Check and Watch.

TEST(HealthGrpcTest, WatchSeesIngestTransitions) {
  testing::TestServer server;
  FakeClock clock;
  absl::Mutex mu;
  std::vector<StreamStatusSnapshot> snapshots = {
      InState(StreamState::kAuthFailed)};
  HealthMonitor::Options options;
  options.streams = {"companies"};
  HealthMonitor::Deps deps;
  deps.clock = &clock;
  deps.snapshots = [&] {
    absl::MutexLock lock(&mu);
    return snapshots;
  };
  deps.set_serving = [&server](bool serving) {
    server.grpc()->SetHealth(kIngestHealthService, serving);
  };
  HealthMonitor monitor(options, deps);
  server.service()->SetHealthFiller(
      [&monitor](v1::HealthStatus* h) { monitor.FillHealth(h); });
  monitor.Tick();

  auto health = grpc::health::v1::Health::NewStub(server.channel());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(kIngestHealthService);
  grpc::health::v1::HealthCheckResponse response;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(health->Check(&ctx, request, &response).ok());
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  // GetStatus names the failing rule.
  {
    grpc::ClientContext ctx;
    v1::GetStatusResponse status;
    ASSERT_TRUE(server.stub()->GetStatus(&ctx, {}, &status).ok());
    EXPECT_EQ(status.health().overall(), "failed");
    ASSERT_EQ(status.health().issues_size(), 1);
    EXPECT_EQ(status.health().issues(0).rule(), "auth_failed");
  }

  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
  auto reader = health->Watch(&watch_ctx, request);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  {
    absl::MutexLock lock(&mu);
    snapshots = {Streaming(clock.Now())};
  }
  monitor.Tick();
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  {
    absl::MutexLock lock(&mu);
    snapshots = {InState(StreamState::kBackingOff)};
  }
  monitor.Tick();  // disconnected from now: still healthy
  clock.Advance(absl::Minutes(2));
  monitor.Tick();  // degraded: still SERVING (no update on the watch)
  clock.Advance(absl::Minutes(13));
  monitor.Tick();  // failed
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  watch_ctx.TryCancel();
  while (reader->Read(&response)) {
  }
  reader->Finish();

  // The process and reads stay SERVING throughout.
  for (const char* name : {"", kServiceName}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest r;
    r.set_service(name);
    ASSERT_TRUE(health->Check(&ctx, r, &response).ok());
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

}  // namespace
}  // namespace chstream::server
