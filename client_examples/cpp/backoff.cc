#include "client_examples/cpp/backoff.h"

#include <algorithm>
#include <utility>

namespace chstream::client_examples {

Backoff::Backoff(absl::Duration initial, absl::Duration max,
                 std::function<double()> uniform01)
    : initial_(initial), max_(max), uniform01_(std::move(uniform01)) {}

absl::Duration Backoff::NextCap() const {
  absl::Duration cap = initial_;
  // Doubling stops at max, so this never overflows whatever attempts_ is.
  for (int i = 0; i < attempts_ && cap < max_; ++i) cap *= 2;
  return std::min(cap, max_);
}

absl::Duration Backoff::Next() {
  const absl::Duration cap = NextCap();
  ++attempts_;
  const double u = std::clamp(uniform01_(), 0.0, 1.0);
  return cap * u;
}

}  // namespace chstream::client_examples
