#include "ingest/connect_limiter.h"

#include <algorithm>

namespace chstream::ingest {

ConnectLimiter::ConnectLimiter(int per_minute, const Clock* clock)
    : per_minute_(std::max(1, per_minute)), clock_(clock) {}

absl::Time ConnectLimiter::Reserve() {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  while (!slots_.empty() && slots_.front() <= now - absl::Minutes(1)) {
    slots_.pop_front();
  }
  absl::Time at = now;
  if (slots_.size() >= static_cast<size_t>(per_minute_)) {
    // The slot frees a minute after the attempt per_minute_ places back.
    at = std::max(now, slots_[slots_.size() - per_minute_] + absl::Minutes(1));
  }
  slots_.push_back(at);
  return at;
}

}  // namespace chstream::ingest
