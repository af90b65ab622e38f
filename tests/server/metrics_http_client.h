// File: tests/server/metrics_http_client.h
//
// A minimal blocking client over plain TCP (POSIX sockets): HTTP/1.1
// responses for the operations listener's tests, raw bytes for tests that
// speak a protocol by hand (server_test's HTTP/2 frames). Every wait has a
// deadline; nothing sleeps.
//
// Thread-safety: none; one thread per connection.
//
//   ASSERT_OK_AND_ASSIGN(auto conn, TestConnection::Connect(port));
//   ASSERT_OK(conn->Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
//   ASSERT_OK_AND_ASSIGN(TestResponse r, conn->ReadResponse());
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace chstream::server::testing {

inline constexpr absl::Duration kTestTimeout = absl::Seconds(10);

struct TestResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  // "" when absent.
  std::string Header(const std::string& lower_case_name) const;
};

class TestConnection {
 public:
  // Connects to 127.0.0.1:port.
  static absl::StatusOr<std::unique_ptr<TestConnection>> Connect(
      int port, absl::Duration timeout = kTestTimeout);
  ~TestConnection();
  TestConnection(const TestConnection&) = delete;
  TestConnection& operator=(const TestConnection&) = delete;

  absl::Status Send(std::string_view bytes);

  // Reads one response; the body per Content-Length (none when
  // `head_request`). kUnavailable "closed" when the server closed (FIN or
  // RST) before a complete response; kDeadlineExceeded on timeout.
  absl::StatusOr<TestResponse> ReadResponse(
      bool head_request = false, absl::Duration timeout = kTestTimeout);

  // Reads exactly `n` bytes (after what ReadResponse left). kUnavailable
  // "closed" if the server closed first; kDeadlineExceeded on timeout.
  absl::StatusOr<std::string> ReadBytes(size_t n, absl::Time deadline);

  // Waits until the server closes the connection (FIN or RST), discarding
  // anything it sends. kDeadlineExceeded if it stays open.
  absl::Status WaitForClose(absl::Duration timeout = kTestTimeout);

  // Bytes received but not yet consumed by ReadResponse.
  const std::string& pending() const { return buffer_; }

  void Close();

 private:
  explicit TestConnection(int fd) : fd_(fd) {}
  // Appends what arrives (at least one byte) to buffer_.
  absl::Status ReadSome(absl::Time deadline);

  int fd_;
  std::string buffer_;
};

// One request on a new connection ("Connection: close").
absl::StatusOr<TestResponse> HttpRequest(int port, std::string_view method,
                                         std::string_view target);

}  // namespace chstream::server::testing
