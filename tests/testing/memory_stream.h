// File: tests/testing/memory_stream.h
//
// An Asio AsyncReadStream over bytes in memory, for running the upstream
// response reader (ingest/response_reader.h) without a socket: each read
// returns at most `next_read_size()` bytes (how a test or fuzzer cuts the
// input into reads), then end of file, as a socket would. Reads never
// complete inside the initiating call (Asio's rule). It has the
// expires_after() the reader calls on its lowest layer; the timer is never
// armed: the input is all there.
//
// Thread-safety: use from the io_context's thread only.
//
//   asio::io_context io;
//   MemoryStream stream(io, response, [] { return size_t{1} << 20; });
//   AsyncReadResponse(stream, options, clock, visitor, handler);
//   io.run();
#pragma once

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string_view>
#include <utility>

namespace chstream::testing {

class MemoryStream {
 public:
  using executor_type = boost::asio::io_context::executor_type;

  // `bytes` must outlive the stream; `next_read_size` returns >= 1.
  MemoryStream(boost::asio::io_context& io, std::string_view bytes,
               std::function<size_t()> next_read_size)
      : executor_(io.get_executor()),
        bytes_(bytes),
        next_read_size_(std::move(next_read_size)) {}

  executor_type get_executor() { return executor_; }
  void expires_after(std::chrono::steady_clock::duration) {}

  template <typename MutableBufferSequence, typename ReadHandler>
  auto async_read_some(const MutableBufferSequence& buffers,
                       ReadHandler&& handler) {
    return boost::asio::async_initiate<ReadHandler,
                                       void(boost::beast::error_code, size_t)>(
        [this](auto h, const MutableBufferSequence& b) {
          boost::beast::error_code ec;
          size_t n = 0;
          if (at_ == bytes_.size()) {
            ec = boost::asio::error::eof;
          } else {
            const size_t want = next_read_size_();
            n = boost::asio::buffer_copy(
                b, boost::asio::buffer(bytes_.data() + at_,
                                       std::min(want, bytes_.size() - at_)));
            at_ += n;
          }
          ++reads_;
          boost::asio::post(
              executor_, boost::beast::bind_front_handler(std::move(h), ec, n));
        },
        handler, buffers);
  }

  size_t bytes_read() const { return at_; }
  int reads() const { return reads_; }

 private:
  executor_type executor_;
  const std::string_view bytes_;
  const std::function<size_t()> next_read_size_;
  size_t at_ = 0;
  int reads_ = 0;
};

}  // namespace chstream::testing
