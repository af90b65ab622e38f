#include "ingest/backoff.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace chstream::ingest {

Backoff::Backoff(absl::Duration initial, absl::Duration max,
                 std::function<double()> uniform01, double multiplier,
                 absl::Duration floor)
    : initial_(initial),
      max_(std::max(max, initial)),
      uniform01_(std::move(uniform01)),
      multiplier_(std::max(multiplier, 1.0)),
      floor_(std::max(floor, absl::ZeroDuration())) {}

absl::Duration Backoff::NextCap() const {
  // Grow in floating point and compare before converting, so that a long
  // run of attempts saturates at max instead of overflowing.
  const double cap_seconds =
      absl::ToDoubleSeconds(initial_) * std::pow(multiplier_, attempts_);
  const double max_seconds = absl::ToDoubleSeconds(max_);
  absl::Duration cap = cap_seconds < max_seconds
                           ? initial_ * std::pow(multiplier_, attempts_)
                           : max_;
  return std::max(cap, floor_);
}

absl::Duration Backoff::Next() {
  const absl::Duration cap = NextCap();
  if (attempts_ < 1'000'000) ++attempts_;
  const double u = std::clamp(uniform01_(), 0.0, 1.0);
  return floor_ + (cap - floor_) * u;
}

}  // namespace chstream::ingest
