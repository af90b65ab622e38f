#include "ingest/backoff.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::ingest {
namespace {

using ::testing::ElementsAre;

std::vector<absl::Duration> Take(Backoff& backoff, int n) {
  std::vector<absl::Duration> out;
  for (int i = 0; i < n; ++i) out.push_back(backoff.Next());
  return out;
}

TEST(BackoffTest, UpperBoundDoublesUpToMax) {
  Backoff backoff(absl::Seconds(1), absl::Seconds(60), [] { return 1.0; });
  EXPECT_THAT(
      Take(backoff, 9),
      ElementsAre(absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                  absl::Seconds(8), absl::Seconds(16), absl::Seconds(32),
                  absl::Seconds(60), absl::Seconds(60), absl::Seconds(60)));
  EXPECT_EQ(backoff.attempts(), 9);
}

TEST(BackoffTest, FullJitterIsUniformBelowTheCap) {
  Backoff backoff(absl::Seconds(1), absl::Minutes(5), [] { return 0.5; });
  EXPECT_THAT(Take(backoff, 4),
              ElementsAre(absl::Milliseconds(500), absl::Seconds(1),
                          absl::Seconds(2), absl::Seconds(4)));
  Backoff zero(absl::Seconds(1), absl::Minutes(5), [] { return 0.0; });
  EXPECT_THAT(Take(zero, 3),
              ElementsAre(absl::ZeroDuration(), absl::ZeroDuration(),
                          absl::ZeroDuration()));
}

TEST(BackoffTest, SequenceOfRandomValuesIsUsedInOrder) {
  const std::vector<double> values = {0.25, 1.0, 0.0, 0.75};
  size_t next = 0;
  Backoff backoff(absl::Seconds(4), absl::Seconds(100),
                  [&] { return values[next++ % values.size()]; });
  // caps 4, 8, 16, 32
  EXPECT_THAT(Take(backoff, 4),
              ElementsAre(absl::Seconds(1), absl::Seconds(8),
                          absl::ZeroDuration(), absl::Seconds(24)));
}

TEST(BackoffTest, FloorIsTheMinimum) {
  // The 429 schedule: uniform(60 s, min(15 min, 60 s * 2^n)).
  Backoff low(
      absl::Seconds(60), absl::Minutes(15), [] { return 0.0; }, 2.0,
      absl::Seconds(60));
  EXPECT_THAT(Take(low, 3), ElementsAre(absl::Seconds(60), absl::Seconds(60),
                                        absl::Seconds(60)));
  Backoff mid(
      absl::Seconds(60), absl::Minutes(15), [] { return 0.5; }, 2.0,
      absl::Seconds(60));
  // caps 60, 120, 240, 480, 900, 900
  EXPECT_THAT(
      Take(mid, 6),
      ElementsAre(absl::Seconds(60), absl::Seconds(90), absl::Seconds(150),
                  absl::Seconds(270), absl::Seconds(480), absl::Seconds(480)));
}

TEST(BackoffTest, FloorAboveCapGivesTheFloor) {
  Backoff backoff(
      absl::Seconds(1), absl::Seconds(10), [] { return 1.0; }, 2.0,
      absl::Seconds(30));
  EXPECT_THAT(Take(backoff, 2),
              ElementsAre(absl::Seconds(30), absl::Seconds(30)));
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff(absl::Seconds(1), absl::Minutes(5), [] { return 1.0; });
  Take(backoff, 5);
  EXPECT_EQ(backoff.NextCap(), absl::Seconds(32));
  backoff.Reset();
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
}

TEST(BackoffTest, OtherMultiplier) {
  Backoff backoff(
      absl::Milliseconds(100), absl::Seconds(1), [] { return 1.0; }, 3.0);
  EXPECT_THAT(Take(backoff, 4),
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(300),
                          absl::Milliseconds(900), absl::Seconds(1)));
}

TEST(BackoffTest, ManyAttemptsSaturateWithoutOverflow) {
  Backoff backoff(absl::Seconds(1), absl::Minutes(5), [] { return 1.0; });
  absl::Duration last;
  for (int i = 0; i < 5000; ++i) last = backoff.Next();
  EXPECT_EQ(last, absl::Minutes(5));
}

TEST(BackoffTest, OutOfRangeRandomnessIsClamped) {
  Backoff high(absl::Seconds(1), absl::Minutes(5), [] { return 7.0; });
  EXPECT_EQ(high.Next(), absl::Seconds(1));
  Backoff low(absl::Seconds(1), absl::Minutes(5), [] { return -1.0; });
  EXPECT_EQ(low.Next(), absl::ZeroDuration());
}

}  // namespace
}  // namespace chstream::ingest
