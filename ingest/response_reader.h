// File: ingest/response_reader.h
//
// Reads one upstream HTTP response, once the request has been sent: the
// status line and headers, then either the start of an error body (kept for
// the outcome's detail) or the endless 200 body, which is framed into lines
// as it arrives. It ends with the Outcome the ReconnectPolicy decides on.
//
// AsyncReadResponse is an Asio composed operation over any AsyncReadStream
// whose lowest layer has expires_after() (beast::tcp_stream, an ssl_stream
// over one): StreamClient runs it on the upstream connection, and the
// http_response_fuzz target (tests/fuzz) runs the same code on a stream
// that returns the fuzz input from memory. It is written without C++20
// coroutines (an asio::coroutine state machine) because the fuzz build uses
// Debian's clang 14, whose coroutines do not work with libstdc++ 12.
//
// Hostile input: the response headers are limited to 8 KiB and whatever the
// HTTP parser must buffer whole (headers, a chunk header line with its
// extensions, the trailer) to 64 KiB: beyond that the response fails with a
// clear error. Error bodies are kept to 4 KiB, cut at a UTF-8 boundary with
// invalid bytes replaced (the detail reaches logs and proto strings).
//
// Timeouts: the caller arms the stream's timer for the headers (it also
// covers sending the request); an error body gets 5 s; every read of a 200
// body re-arms the idle watchdog (`idle_timeout`).
#pragma once

#include <boost/asio/compose.hpp>
#include <boost/asio/coroutine.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/time/time.h"
#include "base/clock.h"
#include "ingest/line_framer.h"
#include "ingest/reconnect_policy.h"

namespace chstream::ingest {

// What one read of the body may deliver.
inline constexpr size_t kResponseReadBufferBytes = 64 << 10;
// The start of an error body kept in the outcome's detail.
inline constexpr size_t kErrorBodyBytes = 4096;
// The status line and headers of a response (Beast's default, made
// explicit): an upstream sends a few hundred bytes.
inline constexpr uint32_t kMaxHeaderBytes = 8 << 10;
// What the HTTP parser may hold while it waits for the end of a unit it
// cannot parse piecemeal: the header block, one chunk header line (with any
// chunk extensions) or the trailer. Body bytes stream through, whatever the
// line or chunk size. Without this bound a chunk extension with no end grew
// the buffer for as long as the upstream kept sending.
inline constexpr size_t kMaxWireBufferBytes = 64 << 10;

// What AsyncReadResponse reports while it reads (on the stream's executor),
// besides the framed lines (LineFramer::Visitor).
class ResponseVisitor : public LineFramer::Visitor {
 public:
  // Whether the caller gave up: checked after reading the headers and after
  // every read of a 200 body; the outcome is then NetworkError("stopped").
  virtual bool Cancelled() const = 0;
  // A 200 arrived; body lines follow.
  virtual void OnConnected(int http_status) = 0;
  // `n` bytes of the 200 body arrived (before they are framed).
  virtual void OnBodyBytes(size_t n) = 0;
  // The body ended inside a line; its `bytes` bytes are dropped.
  virtual void OnPartialLine(size_t bytes) = 0;
};

struct ResponseReadOptions {
  // Only named in the outcome when the headers time out: the caller arms the
  // stream's timer before sending the request.
  absl::Duration header_timeout = absl::Seconds(60);
  absl::Duration idle_timeout = absl::Seconds(90);
  size_t max_line_bytes = 8 << 20;
};

namespace response_reader_internal {

inline std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  return absl::ToChronoNanoseconds(d);
}

using Parser =
    boost::beast::http::response_parser<boost::beast::http::buffer_body>;

// The outcome of a failed read of the headers.
Outcome HeaderError(const boost::beast::error_code& ec,
                    const ResponseReadOptions& options);
// The outcome of a non-200 response whose body starts with `body` (up to
// kErrorBodyBytes + 3 bytes: see ReadResponseOp).
Outcome ErrorStatus(const Parser& parser, const std::string& body);
// The outcome of a 200 body that ended with `ec` (none: the body ended
// cleanly) after `connected_for`.
Outcome BodyEnded(const boost::beast::error_code& ec,
                  const ResponseReadOptions& options,
                  absl::Duration connected_for);

template <typename Stream>
class ReadResponseOp {
 public:
  ReadResponseOp(Stream& stream, const ResponseReadOptions& options,
                 const Clock& clock, ResponseVisitor& visitor)
      : stream_(stream),
        clock_(clock),
        visitor_(visitor),
        state_(std::make_unique<State>(options)) {}

  template <typename Self>
  void operator()(Self& self, boost::beast::error_code ec = {},
                  size_t /*bytes_transferred*/ = 0) {
    namespace http = boost::beast::http;
    State& s = *state_;
    auto& lowest = boost::beast::get_lowest_layer(stream_);
    BOOST_ASIO_CORO_REENTER(s.coro) {
      BOOST_ASIO_CORO_YIELD http::async_read_header(stream_, s.wire, s.parser,
                                                    std::move(self));
      if (visitor_.Cancelled()) {
        return self.complete(Outcome::NetworkError("stopped"));
      }
      if (ec) return self.complete(HeaderError(ec, s.options));
      if (s.parser.get().result_int() != 200) {
        // Keep the start of the body: it explains the status. Up to 3 bytes
        // more than is kept, to tell a character cut by the 4 KiB limit (it
        // is dropped) from one that is really incomplete (it is replaced).
        lowest.expires_after(std::chrono::seconds(5));
        while (!s.parser.is_done() && s.body.size() < kWantedErrorBytes) {
          s.room = kWantedErrorBytes - s.body.size();
          s.parser.get().body().data = s.buffer.get();
          s.parser.get().body().size = s.room;
          BOOST_ASIO_CORO_YIELD http::async_read_some(stream_, s.wire, s.parser,
                                                      std::move(self));
          s.body.append(s.buffer.get(), s.room - s.parser.get().body().size);
          if (ec && ec != http::error::need_buffer) break;
        }
        return self.complete(ErrorStatus(s.parser, s.body));
      }

      visitor_.OnConnected(static_cast<int>(s.parser.get().result_int()));
      s.connected_at = clock_.Now();
      // A 200 with no body (Content-Length: 0): the parser is already done,
      // and reading on from a done parser is an assertion failure in Beast
      // (found by http_response_fuzz).
      if (s.parser.is_done()) {
        return self.complete(BodyEnded({}, s.options, absl::ZeroDuration()));
      }
      for (;;) {
        s.parser.get().body().data = s.buffer.get();
        s.parser.get().body().size = kResponseReadBufferBytes;
        // The idle watchdog: any byte, heartbeats included, resets it.
        lowest.expires_after(ToChrono(s.options.idle_timeout));
        BOOST_ASIO_CORO_YIELD http::async_read_some(stream_, s.wire, s.parser,
                                                    std::move(self));
        if (visitor_.Cancelled()) {
          return self.complete(Outcome::NetworkError("stopped"));
        }
        if (ec == http::error::need_buffer) ec = {};
        // Parse what else has arrived, here rather than one async_read_some
        // (with its completion hand-off and timer re-arm) per element: the
        // parser is not eager (async_read_header turned that off, and an
        // eager async_read_some would hold the lines parsed until more bytes
        // came), so each put() takes one chunk header or one chunk's data,
        // and the upstream sends one chunk per line. This is what
        // async_read_some does with buffered bytes, without the hand-off.
        while (!ec && !s.parser.is_done() && s.wire.size() > 0 &&
               s.parser.get().body().size > 0) {
          s.wire.consume(s.parser.put(s.wire.data(), ec));
          if (ec == http::error::need_more || ec == http::error::need_buffer) {
            ec = {};
            break;
          }
        }
        {
          const size_t n =
              kResponseReadBufferBytes - s.parser.get().body().size;
          if (n > 0) {
            visitor_.OnBodyBytes(n);
            s.framer.Feed(std::string_view(s.buffer.get(), n), visitor_);
          }
        }
        if (ec || s.parser.is_done()) {
          const size_t dropped = s.framer.Finish();
          if (dropped > 0) visitor_.OnPartialLine(dropped);
          return self.complete(
              BodyEnded(ec, s.options, clock_.Now() - s.connected_at));
        }
      }
    }
  }

 private:
  static constexpr size_t kWantedErrorBytes = kErrorBodyBytes + 3;

  // On the heap: the operation object moves with every read, and the
  // parser, buffers and framer must stay where the pending read put them.
  struct State {
    explicit State(const ResponseReadOptions& o)
        : options(o),
          wire(kMaxWireBufferBytes),
          framer(o.max_line_bytes),
          buffer(new char[kResponseReadBufferBytes]) {
      parser.header_limit(kMaxHeaderBytes);
      // No limit on the endless body. Not boost::none: Boost 1.74 compares
      // Content-Length against the optional itself, and any length is
      // "greater" than none, so every error response with a body failed to
      // parse (a 401 or 429 then looked like a network error and was
      // retried as one).
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      // Beast reads max(512, capacity - size) bytes at a time: without room
      // reserved, every read was a 512-byte recvmsg (three per event).
      wire.reserve(kResponseReadBufferBytes);
    }

    const ResponseReadOptions options;
    boost::asio::coroutine coro;
    Parser parser;
    boost::beast::flat_buffer wire;
    LineFramer framer;
    std::unique_ptr<char[]> buffer;
    std::string body;  // the start of an error body
    size_t room = 0;   // what the pending error-body read may deliver
    absl::Time connected_at;
  };

  Stream& stream_;
  const Clock& clock_;
  ResponseVisitor& visitor_;
  std::unique_ptr<State> state_;
};

}  // namespace response_reader_internal

// Reads the response to a request already sent on `stream`, then completes
// `token` with the Outcome (signature void(Outcome)). `stream`, `clock` and
// `visitor` must outlive the operation.
template <typename Stream, typename CompletionToken>
auto AsyncReadResponse(Stream& stream, const ResponseReadOptions& options,
                       const Clock& clock, ResponseVisitor& visitor,
                       CompletionToken&& token) {
  return boost::asio::async_compose<CompletionToken, void(Outcome)>(
      response_reader_internal::ReadResponseOp<Stream>(stream, options, clock,
                                                       visitor),
      token, stream);
}

}  // namespace chstream::ingest
