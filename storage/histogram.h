// File: storage/histogram.h
//
// A fixed-bucket histogram (Prometheus style) for the writer's commit latency
// and batch size.
//
// Thread-safety: none; the owner serialises access.
//
//   Histogram h({0.001, 0.01, 0.1});
//   h.Observe(0.004);        // counts() == {0, 1, 0, 0}
#pragma once

#include <cstdint>
#include <vector>

namespace chstream::storage {

class Histogram {
 public:
  // `upper_bounds` must be strictly increasing.
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative: counts()[i] is the number of values v with
  // bounds()[i-1] < v <= bounds()[i]; the last element (index
  // bounds().size()) counts values above every bound (+Inf).
  const std::vector<uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

  // An estimate of the q-quantile (0 < q <= 1) by linear interpolation
  // inside the bucket that holds it; 0 when empty. Values in the +Inf bucket
  // are reported as the largest bound.
  double Quantile(double q) const { return Quantile(bounds_, counts_, q); }
  // The same for bucket data copied out of a Histogram (e.g. from
  // EventWriter::Stats).
  static double Quantile(const std::vector<double>& bounds,
                         const std::vector<uint64_t>& counts, double q);

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace chstream::storage
