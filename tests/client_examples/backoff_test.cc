#include "client_examples/cpp/backoff.h"

#include <vector>

#include "gtest/gtest.h"

namespace chstream::client_examples {
namespace {

TEST(BackoffTest, DoublesUpToMaxWithFullJitter) {
  double u = 1.0;
  Backoff backoff(absl::Milliseconds(500), absl::Seconds(3), [&] { return u; });
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(500));
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
  EXPECT_EQ(backoff.Next(), absl::Seconds(2));
  EXPECT_EQ(backoff.Next(), absl::Seconds(3));  // 4 s capped
  EXPECT_EQ(backoff.Next(), absl::Seconds(3));
  EXPECT_EQ(backoff.attempts(), 5);
  u = 0.25;
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(750));
  u = 0.0;
  EXPECT_EQ(backoff.Next(), absl::ZeroDuration());
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff(absl::Seconds(1), absl::Seconds(30), [] { return 0.5; });
  backoff.Next();
  backoff.Next();
  EXPECT_EQ(backoff.NextCap(), absl::Seconds(4));
  backoff.Reset();
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_EQ(backoff.NextCap(), absl::Seconds(1));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(500));
}

TEST(BackoffTest, ClampsOutOfRangeRandomness) {
  std::vector<double> values = {-3.0, 7.0};
  size_t i = 0;
  Backoff backoff(absl::Seconds(2), absl::Seconds(2),
                  [&] { return values[i++]; });
  EXPECT_EQ(backoff.Next(), absl::ZeroDuration());
  EXPECT_EQ(backoff.Next(), absl::Seconds(2));
}

// Verifies that very many attempts neither overflow nor exceed the maximum.
TEST(BackoffTest, ManyAttemptsStayAtMax) {
  Backoff backoff(absl::Milliseconds(1), absl::Minutes(5), [] { return 1.0; });
  absl::Duration last;
  for (int i = 0; i < 10'000; ++i) last = backoff.Next();
  EXPECT_EQ(last, absl::Minutes(5));
  EXPECT_EQ(backoff.NextCap(), absl::Minutes(5));
}

}  // namespace
}  // namespace chstream::client_examples
