// File: tests/ingest/simulator/test_http_client.h
//
// A minimal blocking HTTP/1.1 client for the simulator's tests, over plain
// TCP or TLS (Boost.Asio/OpenSSL). It decodes the chunked transfer coding
// itself so that tests can see every chunk boundary, and every read takes a
// deadline: nothing ever waits without one.
//
// Errors: kDeadlineExceeded when nothing arrived in time; kUnavailable
// "eof" for a FIN (also a TLS stream truncated without close_notify);
// kAborted "connection reset" for an RST; kOutOfRange "end of body" when
// ReadLine() meets the terminating 0-length chunk.
//
// Thread-safety: none; one thread per client.
//
//   ASSERT_OK_AND_ASSIGN(auto client, TestHttpClient::Connect(sim->port()));
//   ASSERT_OK(client->Get("/companies?timepoint=82000000", "test-key"));
//   ASSERT_OK_AND_ASSIGN(ResponseHead head, client->ReadHead(kTimeout));
//   ASSERT_OK_AND_ASSIGN(std::string line, client->ReadLine(kTimeout));
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace chstream::ingest::sim::testing {

struct ResponseHead {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names

  // "" when absent.
  std::string Header(std::string_view lower_case_name) const;
};

class TestHttpClient {
 public:
  struct Tls {
    std::string ca_pem;              // trust anchor
    std::string host = "localhost";  // verified name (or IP) and SNI
  };

  // Connects to 127.0.0.1:port (and completes the TLS handshake with
  // verification when `tls` is set).
  static absl::StatusOr<std::unique_ptr<TestHttpClient>> Connect(
      uint16_t port, std::optional<Tls> tls = std::nullopt,
      absl::Duration timeout = absl::Seconds(10));

  ~TestHttpClient();
  TestHttpClient(const TestHttpClient&) = delete;
  TestHttpClient& operator=(const TestHttpClient&) = delete;

  // Sends "<method> <target> HTTP/1.1" with "Authorization: Basic
  // base64(key:password)" when `key` is set.
  absl::Status Get(std::string_view target, std::optional<std::string> key,
                   std::string_view password = "",
                   std::string_view method = "GET");
  absl::Status WriteRaw(std::string_view bytes);

  absl::StatusOr<ResponseHead> ReadHead(absl::Duration timeout);
  // The body of a Content-Length response.
  absl::StatusOr<std::string> ReadFixedBody(const ResponseHead& head,
                                            absl::Duration timeout);

  struct Chunk {
    std::string data;
    bool last = false;  // the terminating 0-length chunk
  };
  absl::StatusOr<Chunk> ReadChunk(absl::Duration timeout);

  // The next complete line of the chunked body, without its '\n' ("" is a
  // heartbeat).
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // Reads until `count` non-empty lines (events) have arrived, counting the
  // heartbeats in between.
  absl::StatusOr<std::vector<std::string>> ReadEvents(
      int count, absl::Duration timeout, int* heartbeats = nullptr);

  // Every chunk's data received so far, in order.
  const std::vector<std::string>& chunks() const { return chunks_; }
  // Body bytes received after the last '\n'.
  const std::string& partial_line() const { return line_buffer_; }

  // Closes the socket (FIN).
  void Close();

 private:
  class Impl;
  explicit TestHttpClient(std::unique_ptr<Impl> impl);
  // Reads more bytes into raw_ before `deadline`.
  absl::Status Fill(absl::Time deadline);

  std::unique_ptr<Impl> impl_;
  std::string raw_;  // received, not yet consumed
  std::vector<std::string> chunks_;
  std::string line_buffer_;
  bool body_ended_ = false;
};

}  // namespace chstream::ingest::sim::testing
