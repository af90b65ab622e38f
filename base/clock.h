// File: base/clock.h
//
// Injected time. Production code asks a Clock for the time instead of calling
// absl::Now() or std::chrono clocks, so that backoff, breaker, watchdog and
// health logic can be tested exactly and instantly with FakeClock.
//
// Thread-safety: RealClock and FakeClock are safe to use from any thread.
//
//   chstream::FakeClock clock(absl::FromUnixSeconds(1'700'000'000));
//   clock.Advance(absl::Seconds(5));
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace chstream {

class Clock {
 public:
  virtual ~Clock() = default;

  // Wall-clock time.
  virtual absl::Time Now() const = 0;

  // The process-wide real clock (never destroyed).
  static Clock* Real();
};

// A clock that only moves when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chstream
