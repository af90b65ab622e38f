// File: tests/testing/loopback.h
//
// Loopback TCP ports for tests.
//
// Thread-safety: stateless.
//
//   int port = 0;
//   ASSERT_OK_AND_ASSIGN(int fd, BindLoopback(&port));  // holds the port
//   ::close(fd);
#pragma once

#include "absl/status/statusor.h"

namespace chstream::testing {

// A TCP socket (close-on-exec) bound to a port of 127.0.0.1 that the kernel
// picked as free, not listening; the port in `*port`. The caller closes it.
absl::StatusOr<int> BindLoopback(int* port);

}  // namespace chstream::testing
