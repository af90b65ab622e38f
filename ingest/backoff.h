// File: ingest/backoff.h
//
// Exponential backoff with "full jitter" above an optional floor
// (the AWS architecture blog's variant; Envoy's
// JitteredExponentialBackOffStrategy has the same shape). The n-th delay
// (n = 0, 1, ...) since the last Reset() is
//
//   cap_n   = min(max, initial * multiplier^n)     (never below floor)
//   delay_n = floor + uniform01() * (cap_n - floor)
//
// i.e. uniform in [floor, cap_n]. Randomness is injected so that schedules
// are exact in tests. Pure: no clock, no sleeping.
//
// Thread-safety: not thread-safe; one Backoff per connection.
//
//   Backoff backoff(absl::Seconds(1), absl::Minutes(5), uniform01);
//   absl::Duration wait = backoff.Next();  // uniform in [0, 1s]
//   wait = backoff.Next();                 // uniform in [0, 2s]
//   backoff.Reset();                       // after a healthy connection
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace chstream::ingest {

class Backoff {
 public:
  // REQUIRES: initial > 0, max >= initial, multiplier >= 1, floor >= 0;
  // uniform01 returns values in [0, 1] (clamped if not).
  Backoff(absl::Duration initial, absl::Duration max,
          std::function<double()> uniform01, double multiplier = 2.0,
          absl::Duration floor = absl::ZeroDuration());

  // The next delay; counts an attempt.
  absl::Duration Next();

  // Back to the first delay.
  void Reset() { attempts_ = 0; }

  // Delays handed out since the last Reset().
  int attempts() const { return attempts_; }

  // The upper bound of the next delay (cap_n above), without consuming it.
  absl::Duration NextCap() const;

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  const std::function<double()> uniform01_;
  const double multiplier_;
  const absl::Duration floor_;
  int attempts_ = 0;
};

}  // namespace chstream::ingest
