// File: ingest/circuit_breaker.h
//
// A per-stream circuit breaker on an injected clock:
//
//   kClosed   -- failure_threshold consecutive failures -->  kOpen
//   kOpen     -- cooldown elapsed, AllowAttempt() -------->  kHalfOpen
//   kHalfOpen -- the single trial attempt succeeds ------->  kClosed
//   kHalfOpen -- the trial fails -------------------------->  kOpen, with the
//                cooldown multiplied by cooldown_multiplier, capped at
//                max_cooldown
//
// While open, AllowAttempt() refuses; once the cooldown has elapsed it lets
// exactly one attempt through (half-open) and refuses any other until that
// attempt's result is recorded. A success resets the failure count and the
// cooldown. A failure recorded while open (an attempt that was not asked
// for) changes nothing.
//
// Thread-safety: not thread-safe; one breaker per stream, used from that
// stream's connection loop.
//
//   CircuitBreaker breaker({}, clock);
//   if (breaker.AllowAttempt()) {
//     ok ? breaker.RecordSuccess() : breaker.RecordFailure();
//   } else {
//     wait until breaker.open_until();
//   }
#pragma once

#include "absl/time/time.h"
#include "base/clock.h"

namespace chstream::ingest {

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  struct Options {
    int failure_threshold = 5;
    absl::Duration cooldown = absl::Seconds(60);
    double cooldown_multiplier = 2.0;
    absl::Duration max_cooldown = absl::Minutes(15);
  };

  // `clock` must outlive the breaker.
  CircuitBreaker(Options options, const Clock* clock);

  // True if an attempt may start now. In kOpen after the cooldown this moves
  // to kHalfOpen and admits exactly one attempt.
  bool AllowAttempt();
  void RecordSuccess();
  void RecordFailure();

  // kOpen is reported as kHalfOpen once the cooldown has elapsed (the next
  // AllowAttempt() will admit the trial).
  State state() const;
  // When the current (or last) open period ends; InfinitePast if never open.
  absl::Time open_until() const { return open_until_; }
  int consecutive_failures() const { return consecutive_failures_; }
  // The cooldown the next opening will use.
  absl::Duration current_cooldown() const { return cooldown_; }

 private:
  void Open();

  const Options options_;
  const Clock* const clock_;
  State state_ = State::kClosed;
  int consecutive_failures_ = 0;
  absl::Duration cooldown_;
  absl::Time open_until_ = absl::InfinitePast();
  bool trial_in_flight_ = false;
};

}  // namespace chstream::ingest
