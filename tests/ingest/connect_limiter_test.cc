#include "ingest/connect_limiter.h"

#include "gtest/gtest.h"

namespace chstream::ingest {
namespace {

TEST(ConnectLimiterTest, AllowsBurstThenSpacesAttempts) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  ConnectLimiter limiter(3, &clock);
  const absl::Time t0 = clock.Now();
  EXPECT_EQ(limiter.Reserve(), t0);
  EXPECT_EQ(limiter.Reserve(), t0);
  EXPECT_EQ(limiter.Reserve(), t0);
  // The fourth must wait until the first is a minute old, and so on.
  EXPECT_EQ(limiter.Reserve(), t0 + absl::Minutes(1));
  EXPECT_EQ(limiter.Reserve(), t0 + absl::Minutes(1));
  EXPECT_EQ(limiter.Reserve(), t0 + absl::Minutes(1));
  EXPECT_EQ(limiter.Reserve(), t0 + absl::Minutes(2));
}

// Verifies that no sliding minute ever holds more than N attempts, whatever
// the pattern of requests.
TEST(ConnectLimiterTest, NeverMoreThanNInAnyMinute) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  ConnectLimiter limiter(10, &clock);
  std::vector<absl::Time> attempts;
  for (int i = 0; i < 200; ++i) {
    attempts.push_back(limiter.Reserve());
    clock.Advance(absl::Seconds(i % 7));
  }
  std::sort(attempts.begin(), attempts.end());
  for (size_t i = 0; i + 10 < attempts.size(); ++i) {
    EXPECT_GE(attempts[i + 10] - attempts[i], absl::Minutes(1)) << i;
  }
}

TEST(ConnectLimiterTest, QuietPeriodsFreeSlots) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  ConnectLimiter limiter(2, &clock);
  limiter.Reserve();
  limiter.Reserve();
  clock.Advance(absl::Minutes(5));
  EXPECT_EQ(limiter.Reserve(), clock.Now());
}

}  // namespace
}  // namespace chstream::ingest
