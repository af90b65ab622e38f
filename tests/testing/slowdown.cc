// File: tests/testing/slowdown.cc
#include "tests/testing/slowdown.h"

#include <cstdlib>

#include "absl/strings/numbers.h"

namespace chstream::testing {

double TestSlowdown() {
  static const double factor = [] {
    const char* value = std::getenv("CHSTREAM_TEST_SLOWDOWN");
    double f = 1;
    if (value == nullptr || !absl::SimpleAtod(value, &f) || f < 1) return 1.0;
    return f;
  }();
  return factor;
}

absl::Duration Scaled(absl::Duration d) { return d * TestSlowdown(); }

}  // namespace chstream::testing
