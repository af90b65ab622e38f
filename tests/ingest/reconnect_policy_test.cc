#include "ingest/reconnect_policy.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::ingest {
namespace {

using ::testing::HasSubstr;

class ReconnectPolicyTest : public ::testing::Test {
 protected:
  std::unique_ptr<ReconnectPolicy> Make(ReconnectPolicy::Options options = {}) {
    return std::make_unique<ReconnectPolicy>(options, &clock_,
                                             [this] { return u_; });
  }

  // Moves the clock to the decision's next attempt and starts it.
  void AttemptAt(ReconnectPolicy& policy, const Decision& d) {
    clock_.Set(d.next_attempt_at);
    ASSERT_TRUE(policy.BeginAttempt());
    EXPECT_EQ(policy.state(), StreamState::kConnecting);
  }

  // Feeds `outcome` after each attempt and returns the delays chosen.
  std::vector<absl::Duration> Schedule(ReconnectPolicy& policy,
                                       const Outcome& outcome, int n) {
    std::vector<absl::Duration> delays;
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(policy.BeginAttempt()) << "attempt " << i;
      const Decision d = policy.OnOutcome(outcome);
      delays.push_back(d.next_attempt_at - clock_.Now());
      clock_.Set(d.next_attempt_at);
    }
    return delays;
  }

  static ReconnectPolicy::Options NoBreaker() {
    ReconnectPolicy::Options o;
    o.breaker_failures = 1000;
    return o;
  }

  FakeClock clock_;
  double u_ = 0.5;
};

TEST_F(ReconnectPolicyTest, StartsReadyToConnect) {
  auto policy = Make();
  EXPECT_EQ(policy->state(), StreamState::kConnecting);
  EXPECT_FALSE(policy->stopped());
  EXPECT_TRUE(policy->BeginAttempt());
}

TEST_F(ReconnectPolicyTest, ConnectedIsStreaming) {
  auto policy = Make();
  ASSERT_TRUE(policy->BeginAttempt());
  Decision d = policy->OnOutcome(Outcome::Connected());
  EXPECT_EQ(d.state, StreamState::kStreaming);
  EXPECT_EQ(d.next_attempt_at, absl::InfiniteFuture());
  EXPECT_FALSE(d.record_gap || d.drop_timepoint || d.stop);
  // A 200 reported as a status is the same thing.
  d = policy->OnOutcome(Outcome::HttpStatus(200));
  EXPECT_EQ(d.state, StreamState::kStreaming);
}

TEST_F(ReconnectPolicyTest, Unauthorized401WaitsTheAuthInterval) {
  auto policy = Make();
  const absl::Time t0 = clock_.Now();
  ASSERT_TRUE(policy->BeginAttempt());
  Decision d = policy->OnOutcome(Outcome::HttpStatus(401));
  EXPECT_EQ(d.state, StreamState::kAuthFailed);
  EXPECT_EQ(d.next_attempt_at, t0 + absl::Minutes(15));
  EXPECT_FALSE(d.stop);
  EXPECT_THAT(d.reason, HasSubstr("401"));
  clock_.Set(t0 + absl::Minutes(15) - absl::Seconds(1));
  EXPECT_FALSE(policy->BeginAttempt());
  EXPECT_EQ(policy->state(), StreamState::kAuthFailed);
  clock_.Set(t0 + absl::Minutes(15));
  // Every retry waits the same; 401s never open the breaker.
  EXPECT_THAT(Schedule(*policy, Outcome::HttpStatus(401), 8),
              ::testing::Each(absl::Minutes(15)));
  EXPECT_EQ(policy->state(), StreamState::kAuthFailed);
  EXPECT_EQ(policy->breaker().state(), CircuitBreaker::State::kClosed);
}

TEST_F(ReconnectPolicyTest, TimepointExpiredResumesFromHeadPromptly) {
  auto policy = Make();
  const absl::Time t0 = clock_.Now();
  ASSERT_TRUE(policy->BeginAttempt());
  Decision d = policy->OnOutcome(Outcome::HttpStatus(416));
  EXPECT_EQ(d.state, StreamState::kTimepointExpired);
  EXPECT_TRUE(d.record_gap);
  EXPECT_TRUE(d.drop_timepoint);
  EXPECT_FALSE(d.stop);
  // uniform in [0.5 s, 2 s] with u = 0.5.
  EXPECT_EQ(d.next_attempt_at, t0 + absl::Milliseconds(1250));
  AttemptAt(*policy, d);
  EXPECT_EQ(policy->OnOutcome(Outcome::Connected()).state,
            StreamState::kStreaming);
  // A later 416 (after a successful connection) is a new gap.
  clock_.Advance(absl::Hours(1));
  d = policy->OnOutcome(Outcome::NetworkError("reset"));
  AttemptAt(*policy, d);
  d = policy->OnOutcome(Outcome::HttpStatus(416));
  EXPECT_TRUE(d.record_gap);
  EXPECT_EQ(d.state, StreamState::kTimepointExpired);
}

// Verifies that a server answering 416 even to a request without a
// timepoint is backed off like an error instead of being hammered.
TEST_F(ReconnectPolicyTest, Repeated416BacksOffLikeAnError) {
  auto policy = Make();
  ASSERT_TRUE(policy->BeginAttempt());
  Decision d = policy->OnOutcome(Outcome::HttpStatus(416));
  ASSERT_TRUE(d.record_gap);
  const std::vector<absl::Duration> expected = {
      absl::Milliseconds(500), absl::Seconds(1), absl::Seconds(2)};
  for (absl::Duration delay : expected) {
    AttemptAt(*policy, d);
    d = policy->OnOutcome(Outcome::HttpStatus(416));
    EXPECT_FALSE(d.record_gap);
    EXPECT_TRUE(d.drop_timepoint);
    EXPECT_EQ(d.state, StreamState::kBackingOff);
    EXPECT_EQ(d.next_attempt_at - clock_.Now(), delay);
  }
}

TEST_F(ReconnectPolicyTest, TimepointExpiredWithStopPolicyStops) {
  ReconnectPolicy::Options options;
  options.on_timepoint_expired = TimepointExpiredAction::kStop;
  auto policy = Make(options);
  ASSERT_TRUE(policy->BeginAttempt());
  const Decision d = policy->OnOutcome(Outcome::HttpStatus(416));
  EXPECT_EQ(d.state, StreamState::kTimepointExpired);
  EXPECT_TRUE(d.stop);
  EXPECT_TRUE(d.record_gap);
  EXPECT_FALSE(d.drop_timepoint);
  EXPECT_EQ(d.next_attempt_at, absl::InfiniteFuture());
  EXPECT_TRUE(policy->stopped());
  clock_.Advance(absl::Hours(100));
  EXPECT_FALSE(policy->BeginAttempt());
  // Nothing restarts it.
  const Decision again = policy->OnOutcome(Outcome::Connected());
  EXPECT_TRUE(again.stop);
  EXPECT_EQ(again.state, StreamState::kTimepointExpired);
}

TEST_F(ReconnectPolicyTest, RateLimited429WaitsAtLeastAMinuteGrowingTo15) {
  auto policy = Make(NoBreaker());
  u_ = 0.5;  // uniform(60 s, cap): caps 60, 120, 240, 480, 900, 900
  EXPECT_THAT(Schedule(*policy, Outcome::HttpStatus(429), 6),
              ::testing::ElementsAre(absl::Seconds(60), absl::Seconds(90),
                                     absl::Seconds(150), absl::Seconds(270),
                                     absl::Seconds(480), absl::Seconds(480)));
  EXPECT_EQ(policy->state(), StreamState::kBackingOff);
  u_ = 1.0;
  EXPECT_THAT(Schedule(*policy, Outcome::HttpStatus(429), 1),
              ::testing::ElementsAre(absl::Minutes(15)));
  u_ = 0.0;
  EXPECT_THAT(Schedule(*policy, Outcome::HttpStatus(429), 1),
              ::testing::ElementsAre(absl::Seconds(60)));
}

TEST_F(ReconnectPolicyTest, RetryAfterExtendsThe429Wait) {
  auto policy = Make(NoBreaker());
  u_ = 0.0;
  EXPECT_THAT(
      Schedule(*policy, Outcome::HttpStatus(429, absl::Seconds(300)), 1),
      ::testing::ElementsAre(absl::Seconds(300)));
  // Shorter than the jittered delay: the delay wins.
  EXPECT_THAT(Schedule(*policy, Outcome::HttpStatus(429, absl::Seconds(5)), 1),
              ::testing::ElementsAre(absl::Seconds(60)));
  // Absurd values are capped at max_retry_after.
  EXPECT_THAT(Schedule(*policy, Outcome::HttpStatus(429, absl::Hours(48)), 1),
              ::testing::ElementsAre(absl::Hours(1)));
}

TEST_F(ReconnectPolicyTest, ErrorsBackOffExponentiallyFrom1sTo5min) {
  for (const Outcome& outcome :
       {Outcome::HttpStatus(503), Outcome::HttpStatus(502),
        Outcome::HttpStatus(504), Outcome::HttpStatus(500),
        Outcome::HttpStatus(403), Outcome::NetworkError("connection refused"),
        Outcome::TlsError("handshake failed"), Outcome::IdleTimeout()}) {
    auto policy = Make(NoBreaker());
    u_ = 1.0;  // the cap itself
    EXPECT_THAT(Schedule(*policy, outcome, 11),
                ::testing::ElementsAre(
                    absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                    absl::Seconds(8), absl::Seconds(16), absl::Seconds(32),
                    absl::Seconds(64), absl::Seconds(128), absl::Seconds(256),
                    absl::Minutes(5), absl::Minutes(5)));
    EXPECT_EQ(policy->state(), StreamState::kBackingOff);
  }
}

TEST_F(ReconnectPolicyTest, ErrorReasonsNameTheCause) {
  auto policy = Make();
  ASSERT_TRUE(policy->BeginAttempt());
  EXPECT_THAT(policy->OnOutcome(Outcome::HttpStatus(503)).reason,
              HasSubstr("HTTP 503"));
  EXPECT_THAT(policy->OnOutcome(Outcome::NetworkError("refused")).reason,
              HasSubstr("network error: refused"));
  EXPECT_THAT(policy->OnOutcome(Outcome::TlsError("bad cert")).reason,
              HasSubstr("TLS error: bad cert"));
  EXPECT_THAT(policy->OnOutcome(Outcome::IdleTimeout()).reason,
              HasSubstr("idle timeout"));
}

TEST_F(ReconnectPolicyTest, CleanEndOfAHealthyStreamReconnectsQuickly) {
  auto policy = Make();
  for (double u : {0.0, 0.5, 1.0}) {
    u_ = u;
    ASSERT_TRUE(policy->BeginAttempt());
    policy->OnOutcome(Outcome::Connected());
    clock_.Advance(absl::Hours(24));
    const Decision d =
        policy->OnOutcome(Outcome::StreamEndedClean(absl::Hours(24)));
    EXPECT_EQ(d.state, StreamState::kBackingOff);
    EXPECT_EQ(d.next_attempt_at - clock_.Now(),
              absl::Milliseconds(500) + absl::Milliseconds(1500) * u);
    EXPECT_FALSE(d.record_gap || d.drop_timepoint || d.stop);
    clock_.Set(d.next_attempt_at);
  }
}

TEST_F(ReconnectPolicyTest, RepeatedQuickCleanEndsBackOffLikeErrors) {
  auto policy = Make(NoBreaker());
  EXPECT_THAT(Schedule(*policy, Outcome::StreamEndedClean(absl::Seconds(5)), 5),
              ::testing::ElementsAre(absl::Milliseconds(500), absl::Seconds(1),
                                     absl::Seconds(2), absl::Seconds(4),
                                     absl::Seconds(8)));
}

// Verifies the circuit breaker: 5 consecutive failures open it for 60 s
// (CIRCUIT_OPEN), one trial is then let through, a failed trial re-opens it
// for 120 s, and a healthy connection closes it and resets the backoff.
TEST_F(ReconnectPolicyTest, CircuitOpensAfterFiveFailuresThenTrials) {
  auto policy = Make();
  const Outcome failure = Outcome::HttpStatus(503);
  EXPECT_THAT(Schedule(*policy, failure, 4),
              ::testing::ElementsAre(absl::Milliseconds(500), absl::Seconds(1),
                                     absl::Seconds(2), absl::Seconds(4)));
  EXPECT_EQ(policy->state(), StreamState::kBackingOff);

  ASSERT_TRUE(policy->BeginAttempt());
  Decision d = policy->OnOutcome(failure);  // the 5th
  EXPECT_EQ(d.state, StreamState::kCircuitOpen);
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Seconds(60));
  EXPECT_THAT(d.reason, HasSubstr("circuit open"));
  const absl::Time opened = clock_.Now();

  clock_.Set(opened + absl::Seconds(59));
  EXPECT_FALSE(policy->BeginAttempt());
  EXPECT_EQ(policy->state(), StreamState::kCircuitOpen);
  clock_.Set(opened + absl::Seconds(60));
  ASSERT_TRUE(policy->BeginAttempt());  // the half-open trial
  EXPECT_EQ(policy->breaker().state(), CircuitBreaker::State::kHalfOpen);

  d = policy->OnOutcome(failure);  // the trial fails
  EXPECT_EQ(d.state, StreamState::kCircuitOpen);
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Seconds(120));

  AttemptAt(*policy, d);
  EXPECT_EQ(policy->OnOutcome(Outcome::Connected()).state,
            StreamState::kStreaming);
  clock_.Advance(absl::Minutes(10));
  d = policy->OnOutcome(Outcome::NetworkError("reset by peer"));
  EXPECT_EQ(d.state, StreamState::kBackingOff);
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Milliseconds(500));
  EXPECT_EQ(policy->breaker().state(), CircuitBreaker::State::kClosed);
}

// Verifies that a half-open trial answered with 401 or 416 (neither a
// failure nor a healthy connection) does not leave the breaker waiting for a
// verdict forever.
TEST_F(ReconnectPolicyTest, TrialAnsweredWith401Or416DoesNotWedgeTheBreaker) {
  for (int status : {401, 416}) {
    auto policy = Make();
    u_ = 0.0;
    Schedule(*policy, Outcome::NetworkError("refused"), 5);
    ASSERT_EQ(policy->state(), StreamState::kCircuitOpen);
    AttemptAt(*policy, policy->last_decision());  // the trial
    Decision d = policy->OnOutcome(Outcome::HttpStatus(status));
    EXPECT_EQ(policy->breaker().state(), CircuitBreaker::State::kClosed);
    AttemptAt(*policy, d);  // allowed again
    d = policy->OnOutcome(Outcome::Connected());
    EXPECT_EQ(d.state, StreamState::kStreaming);
  }
}

TEST_F(ReconnectPolicyTest, Rate429CountsTowardsTheBreaker) {
  auto policy = Make();
  u_ = 0.0;
  EXPECT_THAT(Schedule(*policy, Outcome::HttpStatus(429), 4),
              ::testing::Each(absl::Seconds(60)));
  ASSERT_TRUE(policy->BeginAttempt());
  const Decision d = policy->OnOutcome(Outcome::HttpStatus(429));
  EXPECT_EQ(d.state, StreamState::kCircuitOpen);
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Seconds(60));
}

// Verifies that a 200 followed quickly by a drop does not reset the backoff,
// while a connection that lasted healthy_after (30 s) does.
TEST_F(ReconnectPolicyTest, BackoffResetsOnlyAfterAHealthyConnection) {
  auto policy = Make(NoBreaker());
  u_ = 1.0;
  EXPECT_THAT(Schedule(*policy, Outcome::NetworkError("x"), 3),
              ::testing::ElementsAre(absl::Seconds(1), absl::Seconds(2),
                                     absl::Seconds(4)));
  ASSERT_TRUE(policy->BeginAttempt());
  policy->OnOutcome(Outcome::Connected());
  clock_.Advance(absl::Seconds(29));
  Decision d = policy->OnOutcome(Outcome::IdleTimeout());
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Seconds(8));  // continues

  AttemptAt(*policy, d);
  policy->OnOutcome(Outcome::Connected());
  clock_.Advance(absl::Seconds(30));
  d = policy->OnOutcome(Outcome::IdleTimeout());
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Seconds(1));  // reset

  // The 429 schedule is reset too.
  u_ = 0.5;
  AttemptAt(*policy, d);
  d = policy->OnOutcome(Outcome::HttpStatus(429));
  AttemptAt(*policy, d);
  d = policy->OnOutcome(Outcome::HttpStatus(429));
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Seconds(90));
  AttemptAt(*policy, d);
  policy->OnOutcome(Outcome::Connected());
  clock_.Advance(absl::Minutes(5));
  d = policy->OnOutcome(Outcome::StreamEndedClean(absl::Minutes(5)));
  AttemptAt(*policy, d);
  d = policy->OnOutcome(Outcome::HttpStatus(429));
  EXPECT_EQ(d.next_attempt_at - clock_.Now(), absl::Seconds(60));
}

TEST_F(ReconnectPolicyTest, BeginAttemptRefusesBeforeTheScheduledTime) {
  auto policy = Make();
  ASSERT_TRUE(policy->BeginAttempt());
  const Decision d = policy->OnOutcome(Outcome::HttpStatus(503));
  clock_.Set(d.next_attempt_at - absl::Milliseconds(1));
  EXPECT_FALSE(policy->BeginAttempt());
  EXPECT_EQ(policy->state(), StreamState::kBackingOff);
  clock_.Set(d.next_attempt_at);
  EXPECT_TRUE(policy->BeginAttempt());
  EXPECT_EQ(policy->state(), StreamState::kConnecting);
}

TEST(StreamStateTest, NamesAndNumbersMatchTheProto) {
  EXPECT_EQ(StreamStateName(StreamState::kConnecting), "CONNECTING");
  EXPECT_EQ(StreamStateName(StreamState::kStreaming), "STREAMING");
  EXPECT_EQ(StreamStateName(StreamState::kBackingOff), "BACKING_OFF");
  EXPECT_EQ(StreamStateName(StreamState::kAuthFailed), "AUTH_FAILED");
  EXPECT_EQ(StreamStateName(StreamState::kTimepointExpired),
            "TIMEPOINT_EXPIRED");
  EXPECT_EQ(StreamStateName(StreamState::kCircuitOpen), "CIRCUIT_OPEN");
  EXPECT_EQ(StreamStateName(StreamState::kStopped), "STOPPED");
  EXPECT_EQ(static_cast<int>(StreamState::kConnecting), 1);
  EXPECT_EQ(static_cast<int>(StreamState::kStopped), 7);
}

}  // namespace
}  // namespace chstream::ingest
