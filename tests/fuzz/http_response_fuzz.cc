// File: tests/fuzz/http_response_fuzz.cc
//
// Fuzzes the upstream HTTP response path: status line, headers and the
// (chunked, sized or close-delimited) body, then LineFramer and EventParser
// on the body lines. It runs ingest::AsyncReadResponse, the code
// StreamClient runs on its connection, on a stream that returns the fuzz
// input from memory, and checks what the outcome and the callbacks promise.
//
// Input: the raw response bytes. How they are cut into reads is derived from
// the bytes themselves (deterministic), so a response is also split in
// awkward places (inside a chunk-size line, between CR and LF).
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "base/clock.h"
#include "base/utf8.h"
#include "ingest/event_parser.h"
#include "ingest/reconnect_policy.h"
#include "ingest/response_reader.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/line_checker.h"
#include "tests/testing/memory_stream.h"

namespace {

namespace asio = boost::asio;
using chstream::ingest::Outcome;

// How the input is cut into reads: derived from its first bytes, so a
// response is also split in awkward places (inside a chunk-size line,
// between CR and LF): mostly 1-64 bytes, one read in four up to 8 KiB.
std::function<size_t()> ReadSizes(std::string_view bytes) {
  uint32_t seed = 1;
  for (unsigned char c : bytes.substr(0, 16)) seed = seed * 31 + c;
  return [seed]() mutable -> size_t {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) % 4 == 0 ? 1 + (seed >> 4) % 8192
                                 : 1 + (seed >> 4) % 64;
  };
}

// Checks each line (LineChecker) and what the reader reports.
class Visitor : public chstream::ingest::ResponseVisitor {
 public:
  Visitor(size_t max_line_bytes, chstream::ingest::EventParser& parser)
      : lines_(max_line_bytes, parser) {}

  bool Cancelled() const override { return false; }
  void OnConnected(int http_status) override {
    FUZZ_CHECK(http_status == 200) << http_status;
    FUZZ_CHECK(!connected_) << "OnConnected twice";
    connected_ = true;
  }
  void OnBodyBytes(size_t n) override {
    FUZZ_CHECK(connected_) << "body bytes before OnConnected";
    FUZZ_CHECK(n > 0 && n <= chstream::ingest::kResponseReadBufferBytes) << n;
    body_bytes_ += n;
  }
  void OnPartialLine(size_t bytes) override {
    FUZZ_CHECK(bytes > 0);
    FUZZ_CHECK(!partial_line_) << "OnPartialLine twice";
    partial_line_ = true;
  }
  void OnLine(std::string_view line) override { lines_.OnLine(line); }
  void OnHeartbeat() override { lines_.OnHeartbeat(); }
  void OnOversizedLine(std::string_view prefix, size_t total) override {
    lines_.OnOversizedLine(prefix, total);
  }

  bool connected() const { return connected_; }
  uint64_t body_bytes() const { return body_bytes_; }

 private:
  chstream::fuzz::LineChecker lines_;
  bool connected_ = false;
  bool partial_line_ = false;
  uint64_t body_bytes_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* event_parser = new chstream::ingest::EventParser();
  static auto* clock = new chstream::FakeClock();
  const chstream::ingest::ResponseReadOptions options;

  asio::io_context io;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  chstream::testing::MemoryStream stream(io, input, ReadSizes(input));
  Visitor visitor(options.max_line_bytes, *event_parser);
  std::optional<Outcome> outcome;
  chstream::ingest::AsyncReadResponse(
      stream, options, *clock, visitor,
      [&outcome](Outcome o) { outcome = std::move(o); });
  io.run();

  FUZZ_CHECK(outcome.has_value()) << "the read never completed";
  FUZZ_CHECK(stream.bytes_read() <= size);
  FUZZ_CHECK(visitor.body_bytes() <= size) << "more body bytes than input";
  FUZZ_CHECK(chstream::IsValidUtf8(outcome->detail)) << outcome->detail;
  switch (outcome->kind) {
    case Outcome::Kind::kHttpStatus:
      FUZZ_CHECK(!visitor.connected());
      FUZZ_CHECK(outcome->http_status != 200);
      FUZZ_CHECK(!outcome->retry_after ||
                 *outcome->retry_after >= absl::ZeroDuration());
      // "HTTP <status> <reason>: <body>": the reason is within the header
      // limit and the body within kErrorBodyBytes (replacement characters
      // may grow it by at most 3 bytes in 1).
      FUZZ_CHECK(outcome->detail.size() <=
                 32 + chstream::ingest::kMaxHeaderBytes +
                     3 * chstream::ingest::kErrorBodyBytes)
          << outcome->detail.size();
      break;
    case Outcome::Kind::kStreamEndedClean:
      FUZZ_CHECK(visitor.connected()) << "a clean end without a 200";
      break;
    case Outcome::Kind::kNetworkError:
    case Outcome::Kind::kIdleTimeout:
      break;
    case Outcome::Kind::kConnected:
    case Outcome::Kind::kTlsError:
      FUZZ_CHECK(false) << "unexpected outcome " << outcome->detail;
  }
  return 0;
}
