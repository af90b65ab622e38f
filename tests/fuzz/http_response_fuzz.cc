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
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "base/clock.h"
#include "base/utf8.h"
#include "ingest/event_parser.h"
#include "ingest/reconnect_policy.h"
#include "ingest/response_reader.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/line_checker.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using chstream::ingest::Outcome;

// An AsyncReadStream over the fuzz input that returns it in short reads and
// then end of file, as a socket would. Its timer is never armed: the input
// is all there.
class InputStream {
 public:
  using executor_type = asio::io_context::executor_type;

  InputStream(asio::io_context& io, std::string_view bytes)
      : executor_(io.get_executor()), bytes_(bytes) {
    for (unsigned char c : bytes.substr(0, 16)) seed_ = seed_ * 31 + c;
  }

  executor_type get_executor() { return executor_; }
  void expires_after(std::chrono::steady_clock::duration) {}

  template <typename MutableBufferSequence, typename ReadHandler>
  auto async_read_some(const MutableBufferSequence& buffers,
                       ReadHandler&& handler) {
    return asio::async_initiate<ReadHandler, void(beast::error_code, size_t)>(
        [this](auto h, const MutableBufferSequence& b) {
          beast::error_code ec;
          const size_t n = ReadSome(b, ec);
          // Never complete inside the initiating call (Asio's rule).
          asio::post(executor_, beast::bind_front_handler(std::move(h), ec, n));
        },
        handler, buffers);
  }

  size_t bytes_read() const { return at_; }

 private:
  template <typename MutableBufferSequence>
  size_t ReadSome(const MutableBufferSequence& buffers, beast::error_code& ec) {
    if (at_ == bytes_.size()) {
      ec = asio::error::eof;
      return 0;
    }
    seed_ = seed_ * 1103515245u + 12345u;
    const size_t want = (seed_ >> 16) % 4 == 0 ? 1 + (seed_ >> 4) % 8192
                                               : 1 + (seed_ >> 4) % 64;
    const size_t n = asio::buffer_copy(
        buffers,
        asio::buffer(bytes_.data() + at_, std::min(want, bytes_.size() - at_)));
    at_ += n;
    return n;
  }

  executor_type executor_;
  const std::string_view bytes_;
  size_t at_ = 0;
  uint32_t seed_ = 1;
};

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
  InputStream stream(
      io, std::string_view(reinterpret_cast<const char*>(data), size));
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
