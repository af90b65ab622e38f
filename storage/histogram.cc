#include "storage/histogram.h"

#include <algorithm>
#include <utility>

namespace chstream::storage {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  // First bound >= value: the bucket is (previous bound, bound].
  size_t i =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

double Histogram::Quantile(const std::vector<double>& bounds,
                           const std::vector<uint64_t>& counts, double q) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) return 0;
  const double rank = q * static_cast<double>(total);
  double seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    const double next = seen + static_cast<double>(counts[i]);
    if (next >= rank) {
      if (i >= bounds.size()) return bounds.empty() ? 0 : bounds.back();
      const double lo = i == 0 ? 0 : bounds[i - 1];
      const double hi = bounds[i];
      const double fraction = (rank - seen) / static_cast<double>(counts[i]);
      return lo + (hi - lo) * std::clamp(fraction, 0.0, 1.0);
    }
    seen = next;
  }
  return bounds.empty() ? 0 : bounds.back();
}

}  // namespace chstream::storage
