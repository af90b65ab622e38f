// File: ingest/connect_limiter.h
//
// Upstream rate-limit compliance: at most N connection attempts per key in
// any sliding minute, whatever mix of failures caused them (the upstream
// answers "repeatedly opening connections" with 429). Streams that share a
// key share one limiter.
//
// Thread-safety: all methods are thread-safe.
//
//   ConnectLimiter limiter(10, clock);
//   absl::Time at = limiter.Reserve();   // the attempt may start at `at`
#pragma once

#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"

namespace chstream::ingest {

class ConnectLimiter {
 public:
  // `per_minute` >= 1.
  ConnectLimiter(int per_minute, const Clock* clock);

  // Reserves the earliest attempt slot at or after now and returns its
  // time; the caller must not connect before it.
  absl::Time Reserve();

  int per_minute() const { return per_minute_; }

 private:
  const int per_minute_;
  const Clock* const clock_;
  absl::Mutex mu_;
  // Times of the reserved attempts within the last minute, oldest first.
  std::deque<absl::Time> slots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream::ingest
