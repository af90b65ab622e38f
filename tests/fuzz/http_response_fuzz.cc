// File: tests/fuzz/http_response_fuzz.cc
//
// Fuzzes the upstream HTTP response path: status line, headers and the
// (chunked, sized or close-delimited) body, then LineFramer and EventParser
// on the body bytes.
//
// ingest/stream_client.cc reads the response inside a private coroutine on a
// socket (StreamClient::Session::Exchange), which cannot be called without a
// connection. This target therefore repeats, step for step, what Exchange
// does with the bytes it reads: the same Beast parser configuration
// (response_parser<buffer_body>, body_limit = max, eager), the same 64 KiB
// reads, the same bounded read of a non-200 body and Retry-After parsing, and
// the same framer and parser on a 200 body. Keep it in step with Exchange
// (a seam that takes any stream, e.g. a free ReadResponse<Stream>() used by
// Exchange, would let this target call the real code).
//
// Input: the raw response bytes. How they are cut into reads is derived from
// the bytes themselves (deterministic), so a response is also split in
// awkward places (inside a chunk-size line, between CR and LF).
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "ingest/event_parser.h"
#include "ingest/line_framer.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/line_checker.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// As in ingest/stream_client.cc.
constexpr size_t kReadBufferBytes = 64 << 10;
constexpr size_t kErrorBodyBytes = 4096;
constexpr size_t kMaxLineBytes = 8 << 20;

// A SyncReadStream over the fuzz input that returns it in short reads and
// then end of file, as a socket would.
class InputStream {
 public:
  explicit InputStream(std::string_view bytes) : bytes_(bytes) {
    for (unsigned char c : bytes.substr(0, 16)) seed_ = seed_ * 31 + c;
  }

  template <typename MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers,
                   beast::error_code& ec) {
    if (at_ == bytes_.size()) {
      ec = asio::error::eof;
      return 0;
    }
    ec = {};
    seed_ = seed_ * 1103515245u + 12345u;
    const size_t want = (seed_ >> 16) % 4 == 0 ? 1 + (seed_ >> 4) % 8192
                                               : 1 + (seed_ >> 4) % 64;
    const size_t n = asio::buffer_copy(
        buffers,
        asio::buffer(bytes_.data() + at_, std::min(want, bytes_.size() - at_)));
    at_ += n;
    return n;
  }

  template <typename MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    beast::error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }

 private:
  const std::string_view bytes_;
  size_t at_ = 0;
  uint32_t seed_ = 1;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* event_parser = new chstream::ingest::EventParser();
  InputStream stream(
      std::string_view(reinterpret_cast<const char*>(data), size));
  std::unique_ptr<char[]> buffer(new char[kReadBufferBytes]);
  beast::error_code ec;

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  parser.eager(true);
  beast::flat_buffer wire;
  wire.reserve(kReadBufferBytes);
  http::read_header(stream, wire, parser, ec);
  if (ec) return 0;  // a network error outcome

  const int status = static_cast<int>(parser.get().result_int());
  if (status != 200) {
    auto ra = parser.get().find(http::field::retry_after);
    int seconds;
    absl::Duration retry_after = absl::ZeroDuration();
    if (ra != parser.get().end() &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(
                             ra->value().data(), ra->value().size())),
                         &seconds) &&
        seconds >= 0) {
      retry_after = absl::Seconds(seconds);
    }
    FUZZ_CHECK(retry_after >= absl::ZeroDuration());
    std::string body;
    while (!parser.is_done() && body.size() < kErrorBodyBytes) {
      parser.get().body().data = buffer.get();
      parser.get().body().size = kErrorBodyBytes;
      http::read_some(stream, wire, parser, ec);
      FUZZ_CHECK(parser.get().body().size <= kErrorBodyBytes);
      body.append(buffer.get(), kErrorBodyBytes - parser.get().body().size);
      if (ec && ec != http::error::need_buffer) break;
    }
    if (body.size() > kErrorBodyBytes) body.resize(kErrorBodyBytes);
    FUZZ_CHECK(body.size() <= kErrorBodyBytes);
    return 0;
  }

  chstream::ingest::LineFramer framer(kMaxLineBytes);
  chstream::fuzz::LineChecker checker(kMaxLineBytes, *event_parser);
  uint64_t body_bytes = 0;
  for (;;) {
    parser.get().body().data = buffer.get();
    parser.get().body().size = kReadBufferBytes;
    http::read_some(stream, wire, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    FUZZ_CHECK(parser.get().body().size <= kReadBufferBytes);
    const size_t n = kReadBufferBytes - parser.get().body().size;
    body_bytes += n;
    FUZZ_CHECK(body_bytes <= size) << "more body bytes than input bytes";
    if (n > 0) framer.Feed(std::string_view(buffer.get(), n), checker);
    if ((!ec && parser.is_done()) || ec) {
      framer.Finish();
      break;
    }
  }
  return 0;
}
