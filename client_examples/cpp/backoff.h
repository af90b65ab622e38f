// File: client_examples/cpp/backoff.h
//
// Jittered exponential backoff for the subscriber's reconnect loop ("full
// jitter": the n-th delay since the last Reset() is uniform in
// [0, min(max, initial * 2^n)]). Randomness is injected so that schedules
// are exact in tests. Pure: no clock, no sleeping.
//
// chstream's own ingest/backoff.h has the same shape; this copy keeps the
// client example free of server internals, so that it can be lifted into a
// downstream repository as it is.
//
// Thread-safety: not thread-safe; one Backoff per reconnect loop.
//
//   Backoff backoff(absl::Milliseconds(500), absl::Seconds(30), uniform01);
//   absl::Duration wait = backoff.Next();  // uniform in [0, 0.5 s]
//   wait = backoff.Next();                 // uniform in [0, 1 s]
//   backoff.Reset();                       // after a healthy stream
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace chstream::client_examples {

class Backoff {
 public:
  // REQUIRES: initial > 0, max >= initial. `uniform01` returns values in
  // [0, 1] (clamped if not).
  Backoff(absl::Duration initial, absl::Duration max,
          std::function<double()> uniform01);

  // The next delay; counts an attempt.
  absl::Duration Next();

  // The upper bound of the next delay, without consuming it.
  absl::Duration NextCap() const;

  // Back to the first delay.
  void Reset() { attempts_ = 0; }

  // Delays handed out since the last Reset().
  int attempts() const { return attempts_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  const std::function<double()> uniform01_;
  int attempts_ = 0;
};

}  // namespace chstream::client_examples
