#include "ingest/circuit_breaker.h"

#include "gtest/gtest.h"

namespace chstream::ingest {
namespace {

using State = CircuitBreaker::State;

class CircuitBreakerTest : public ::testing::Test {
 protected:
  CircuitBreaker::Options Options() {
    CircuitBreaker::Options o;
    o.failure_threshold = 3;
    o.cooldown = absl::Seconds(60);
    o.cooldown_multiplier = 2.0;
    o.max_cooldown = absl::Seconds(200);
    return o;
  }
  FakeClock clock_;
};

TEST_F(CircuitBreakerTest, OpensAfterThresholdConsecutiveFailures) {
  CircuitBreaker breaker(Options(), &clock_);
  EXPECT_EQ(breaker.state(), State::kClosed);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(breaker.AllowAttempt());
    breaker.RecordFailure();
    EXPECT_EQ(breaker.state(), State::kClosed);
  }
  EXPECT_TRUE(breaker.AllowAttempt());
  breaker.RecordFailure();
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_EQ(breaker.open_until(), clock_.Now() + absl::Seconds(60));
  EXPECT_FALSE(breaker.AllowAttempt());
}

TEST_F(CircuitBreakerTest, SuccessResetsTheCount) {
  CircuitBreaker breaker(Options(), &clock_);
  breaker.RecordFailure();
  breaker.RecordFailure();
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.consecutive_failures(), 0);
  breaker.RecordFailure();
  breaker.RecordFailure();
  EXPECT_EQ(breaker.state(), State::kClosed);
}

// Verifies open -> (cooldown) -> half-open with exactly one trial -> closed.
TEST_F(CircuitBreakerTest, HalfOpenAdmitsExactlyOneTrialThenCloses) {
  CircuitBreaker breaker(Options(), &clock_);
  for (int i = 0; i < 3; ++i) breaker.RecordFailure();
  clock_.Advance(absl::Seconds(59));
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_FALSE(breaker.AllowAttempt());
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(breaker.state(), State::kHalfOpen);  // ready for the trial
  EXPECT_TRUE(breaker.AllowAttempt());
  EXPECT_EQ(breaker.state(), State::kHalfOpen);
  EXPECT_FALSE(breaker.AllowAttempt());  // only one
  EXPECT_FALSE(breaker.AllowAttempt());
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_TRUE(breaker.AllowAttempt());
  EXPECT_TRUE(breaker.AllowAttempt());
}

// Verifies that a failed trial re-opens with a cooldown that doubles per
// failed trial, is capped, and goes back to the base after a success.
TEST_F(CircuitBreakerTest, FailedTrialReopensWithGrowingCappedCooldown) {
  CircuitBreaker breaker(Options(), &clock_);
  for (int i = 0; i < 3; ++i) breaker.RecordFailure();
  const absl::Duration expected[] = {absl::Seconds(120), absl::Seconds(200),
                                     absl::Seconds(200)};
  absl::Duration cooldown = absl::Seconds(60);
  for (absl::Duration next : expected) {
    clock_.Advance(cooldown);
    ASSERT_TRUE(breaker.AllowAttempt());
    breaker.RecordFailure();
    EXPECT_EQ(breaker.state(), State::kOpen);
    EXPECT_EQ(breaker.open_until(), clock_.Now() + next);
    EXPECT_FALSE(breaker.AllowAttempt());
    cooldown = next;
  }
  clock_.Advance(cooldown);
  ASSERT_TRUE(breaker.AllowAttempt());
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.current_cooldown(), absl::Seconds(60));
  for (int i = 0; i < 3; ++i) breaker.RecordFailure();
  EXPECT_EQ(breaker.open_until(), clock_.Now() + absl::Seconds(60));
}

TEST_F(CircuitBreakerTest, FailureWhileOpenChangesNothing) {
  CircuitBreaker breaker(Options(), &clock_);
  for (int i = 0; i < 3; ++i) breaker.RecordFailure();
  const absl::Time until = breaker.open_until();
  clock_.Advance(absl::Seconds(10));
  breaker.RecordFailure();
  EXPECT_EQ(breaker.open_until(), until);
  EXPECT_EQ(breaker.state(), State::kOpen);
}

}  // namespace
}  // namespace chstream::ingest
