#include "storage/histogram.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::storage {
namespace {

using ::testing::ElementsAre;

TEST(HistogramTest, CountsValuesIntoUpperInclusiveBuckets) {
  Histogram h({1, 10, 100});
  for (double v : {0.5, 1.0, 1.5, 10.0, 99.0, 100.0, 1000.0}) h.Observe(v);
  EXPECT_THAT(h.bounds(), ElementsAre(1, 10, 100));
  EXPECT_THAT(h.counts(), ElementsAre(2, 2, 2, 1));
  EXPECT_EQ(h.count(), 7u);
  EXPECT_DOUBLE_EQ(h.sum(), 1212.0);
}

TEST(HistogramTest, QuantileInterpolatesWithinBucket) {
  Histogram h({10, 20});
  EXPECT_EQ(h.Quantile(0.5), 0);  // empty
  for (int i = 0; i < 10; ++i) h.Observe(15);
  // All ten values in (10, 20]: the median is halfway through the bucket.
  EXPECT_DOUBLE_EQ(h.Quantile(0.5), 15);
  EXPECT_DOUBLE_EQ(h.Quantile(1.0), 20);
  h.Observe(1000);  // +Inf bucket reports the largest bound
  EXPECT_DOUBLE_EQ(h.Quantile(1.0), 20);
}

}  // namespace
}  // namespace chstream::storage
