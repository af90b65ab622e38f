#include "storage/histogram.h"

#include <algorithm>
#include <utility>

namespace chstream::storage {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  // First bound >= value: the bucket is (previous bound, bound].
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) -
             bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

double Histogram::Quantile(double q) const {
  if (count_ == 0) return 0;
  const double rank = q * static_cast<double>(count_);
  double seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] == 0) continue;
    const double next = seen + static_cast<double>(counts_[i]);
    if (next >= rank) {
      if (i == bounds_.size()) return bounds_.empty() ? 0 : bounds_.back();
      const double lo = i == 0 ? 0 : bounds_[i - 1];
      const double hi = bounds_[i];
      const double fraction = (rank - seen) / static_cast<double>(counts_[i]);
      return lo + (hi - lo) * std::clamp(fraction, 0.0, 1.0);
    }
    seen = next;
  }
  return bounds_.empty() ? 0 : bounds_.back();
}

}  // namespace chstream::storage
