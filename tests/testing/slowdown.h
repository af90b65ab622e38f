// File: tests/testing/slowdown.h
//
// How much slower than a plain build the code under test runs: 1 normally,
// the value of CHSTREAM_TEST_SLOWDOWN when set (`--config=tsan` sets it in
// .bazelrc: ThreadSanitizer runs code 5-15x slower). Scale the deadlines that
// only bound how long real work may take on the machine (a client's header
// timeout against a real simulator, a wait for N reconnects); never the ones
// that are the behaviour under test (a FakeClock timeout, an exact count).
//
//   EXPECT_TRUE(WaitUntil(done, Scaled(absl::Seconds(10))));
#pragma once

#include "absl/time/time.h"

namespace chstream::testing {

// >= 1; read once from the environment.
double TestSlowdown();

// `d` times TestSlowdown().
absl::Duration Scaled(absl::Duration d);

}  // namespace chstream::testing
